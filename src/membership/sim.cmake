# hm_membership_sim: SimCluster, the discrete-event simulator that runs real Swim nodes over a
# simulated network in virtual time (tests/membership/swim_property_test, bench/gossip_sim).
# Included from src/membership/CMakeLists.txt after hm_membership is defined.
add_library(hm_membership_sim sim_network.cc)
target_link_libraries(hm_membership_sim PUBLIC hm_membership)
hivemesh_warnings(hm_membership_sim)
