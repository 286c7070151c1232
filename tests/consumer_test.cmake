# Installs the build tree into a scratch prefix and proves an outside project can use it:
# find_package(mpipc CONFIG) with CMake, and pkg-config --cflags --libs mpipc with a plain cc.
# Run by ctest as: cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -DC_COMPILER=... -P this
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR C_COMPILER)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "consumer_test: ${v} not set")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(LAST_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(f include/mpipc.h)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
file(GLOB_RECURSE static_lib ${prefix}/*/libmpipc.a)
file(GLOB_RECURSE shared_lib ${prefix}/*/libmpipc.so.0)
file(GLOB_RECURSE pc_file ${prefix}/*/mpipc.pc)
if(NOT static_lib OR NOT shared_lib OR NOT pc_file)
  message(FATAL_ERROR "missing libmpipc.a, libmpipc.so.0 or mpipc.pc under ${prefix}")
endif()

# Sanitizer builds of the library need the same runtime in the consumer.
set(extra_flags "")
if(SANITIZE)
  set(extra_flags "-fsanitize=${SANITIZE}")
endif()

# 1. CMake package.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
    "-DCMAKE_C_FLAGS=${extra_flags}" "-DCMAKE_EXE_LINKER_FLAGS=${extra_flags}")
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
message(STATUS "find_package consumer: ${LAST_OUTPUT}")
if(NOT LAST_OUTPUT MATCHES "^mpipc [0-9]+\\.[0-9]+\\.[0-9]+: child exited with 42\n$")
  message(FATAL_ERROR "unexpected consumer output: '${LAST_OUTPUT}'")
endif()

# 2. pkg-config.
get_filename_component(pc_dir ${pc_file} DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
find_program(PKG_CONFIG pkg-config REQUIRED)
run(${PKG_CONFIG} --cflags --libs mpipc)
string(STRIP "${LAST_OUTPUT}" pc_flags)
message(STATUS "pkg-config --cflags --libs mpipc: ${pc_flags}")
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
separate_arguments(extra UNIX_COMMAND "${extra_flags}")
run(${C_COMPILER} ${extra} ${SOURCE_DIR}/examples/consumer/main.c ${pc_flags}
    -o ${WORK_DIR}/consumer_pc)
get_filename_component(lib_dir ${shared_lib} DIRECTORY)
set(ENV{LD_LIBRARY_PATH} ${lib_dir})
run(${WORK_DIR}/consumer_pc)
if(NOT LAST_OUTPUT MATCHES "child exited with 42")
  message(FATAL_ERROR "unexpected pkg-config consumer output: '${LAST_OUTPUT}'")
endif()
message(STATUS "consumer test passed")
