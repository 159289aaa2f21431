# hivemesh_warnings(<target>): project code builds with -Wall -Wextra -Werror.
function(hivemesh_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wno-missing-field-initializers)
  if(HIVEMESH_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC 12 reports -Wmaybe-uninitialized false positives inside libstdc++ and Boost headers
    # when optimizing with the sanitizers; Release builds keep the warning.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
endfunction()
