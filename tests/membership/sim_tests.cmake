# Property tests of Swim over SimCluster. Included from tests/membership/CMakeLists.txt.
hivemesh_test(swim_property_test SOURCES swim_property_test.cc LIBS hm_membership_sim)
