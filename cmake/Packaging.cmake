# What `cmake --install` puts where, and the Debian package CPack makes of it (`make package`).
#
# CPack's DEB generator rather than dpkg-buildpackage: the package is made from the same CMake
# build the tests run (no second build description in debian/rules to keep in step), and CPack
# still calls dpkg-shlibdeps for Depends. The maintainer scripts and conffiles are in
# packaging/debian/; docs/deploy.md says what each does.

install(TARGETS hivemesh RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS hivemesh_opencv hivemesh_grpc LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/hivemesh)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/
        DESTINATION ${CMAKE_INSTALL_DATADIR}/hivemesh/models)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/debian/node.yaml
        DESTINATION ${CMAKE_INSTALL_FULL_SYSCONFDIR}/hivemesh)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/systemd/hivemesh.service
        DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/debian/copyright ${PROJECT_SOURCE_DIR}/README.md
              ${PROJECT_SOURCE_DIR}/docs/deploy.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The changelog and the man pages, compressed as Debian wants them (gzip -9n: no name, no time).
set(HIVEMESH_DOC_BUILD ${CMAKE_BINARY_DIR}/packaging)
add_custom_command(
  OUTPUT ${HIVEMESH_DOC_BUILD}/changelog.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${HIVEMESH_DOC_BUILD}
  COMMAND gzip -9n < ${PROJECT_SOURCE_DIR}/packaging/debian/changelog
          > ${HIVEMESH_DOC_BUILD}/changelog.gz
  DEPENDS ${PROJECT_SOURCE_DIR}/packaging/debian/changelog
  VERBATIM)

# Man pages from the binary's own --help (help2man). A cross build runs the binary under its
# emulator (CMAKE_CROSSCOMPILING_EMULATOR, e.g. qemu-aarch64), through a wrapper help2man can call.
find_program(HELP2MAN help2man REQUIRED)
set(HIVEMESH_HELP_WRAPPER ${HIVEMESH_DOC_BUILD}/hivemesh-help)
string(JOIN " " HIVEMESH_EMULATOR ${CMAKE_CROSSCOMPILING_EMULATOR})
file(GENERATE OUTPUT ${HIVEMESH_HELP_WRAPPER}
     CONTENT "#!/bin/sh\nexec ${HIVEMESH_EMULATOR} $<TARGET_FILE:hivemesh> \"$@\"\n"
     FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                      WORLD_READ WORLD_EXECUTE)
set(HIVEMESH_MAN_PAGES)
foreach(page hivemesh hivemesh-agent)
  if(page STREQUAL "hivemesh")
    set(help_option --help)
    set(what "an edge-AI inference mesh node (KServe v2 API)")
  else()
    set(help_option "agent --help")
    set(what "run a hivemesh node")
  endif()
  add_custom_command(
    OUTPUT ${HIVEMESH_DOC_BUILD}/${page}.1.gz
    COMMAND ${HELP2MAN} --no-info --section=1 --name=${what} --help-option=${help_option}
            --version-string=${HIVEMESH_VERSION} --output=${HIVEMESH_DOC_BUILD}/${page}.1
            ${HIVEMESH_HELP_WRAPPER}
    COMMAND sed -i "s/HIVEMESH-HELP/${page}/g; s/hivemesh-help/${page}/g"
            ${HIVEMESH_DOC_BUILD}/${page}.1
    COMMAND gzip -9nf ${HIVEMESH_DOC_BUILD}/${page}.1
    DEPENDS hivemesh
    VERBATIM)
  list(APPEND HIVEMESH_MAN_PAGES ${HIVEMESH_DOC_BUILD}/${page}.1.gz)
endforeach()
add_custom_target(hivemesh_package_docs ALL
                  DEPENDS ${HIVEMESH_DOC_BUILD}/changelog.gz ${HIVEMESH_MAN_PAGES})
install(FILES ${HIVEMESH_DOC_BUILD}/changelog.gz DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${HIVEMESH_MAN_PAGES} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_PACKAGE_NAME hivemesh)
set(CPACK_PACKAGE_VERSION ${HIVEMESH_PACKAGE_VERSION})
# Whoever builds releases puts their own address here (-DHIVEMESH_PACKAGE_MAINTAINER=...).
set(HIVEMESH_PACKAGE_MAINTAINER "hivemesh developers <hivemesh@example.org>"
    CACHE STRING "Maintainer: of the Debian package")
set(CPACK_PACKAGE_CONTACT ${HIVEMESH_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "edge AI models as KServe v2 services in a gossip mesh")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "\
hivemesh runs one small node per edge device. Each node serves AI models\n\
behind the KServe v2 (Open Inference Protocol) REST and gRPC APIs, finds the\n\
other nodes by gossip with no central server, and sends a request to a\n\
neighbour with the model and spare capacity when it cannot serve it well\n\
itself. Nodes have identities and speak mutual TLS. Insights go to the\n\
mesh's bus and, optionally, to an MQTT broker.\n\
.\n\
The package runs the node as the hardened systemd service hivemesh.service,\n\
with its settings in /etc/hivemesh/node.yaml and four small models.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Not found by dpkg-shlibdeps: the user tools the maintainer scripts call, kill for the unit's
# ExecReload (procps: not essential in bookworm), and the Haar cascade the face detector reads.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps, opencv-data")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
include(CPack)
