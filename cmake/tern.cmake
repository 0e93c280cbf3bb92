# Build helpers shared by every module. A module is a folder src/<name>/ built as the static
# library tern_<name>; its tests are tests/unit/<name>/test_*.c (one ctest each); its fuzz
# targets are tests/fuzz/fuzz_<name>_*.c. Adding a file needs no CMake edit: the globs below
# pick it up on the next configure (CONFIGURE_DEPENDS re-globs on every build).

set(TERN_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wstrict-prototypes -Wmissing-prototypes
    -Wformat=2 -Wvla -Wimplicit-fallthrough -fno-common)

function(tern_target_flags target)
    target_compile_options(${target} PRIVATE ${TERN_WARNINGS})
    if(TERN_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
    target_compile_definitions(${target} PRIVATE _GNU_SOURCE)
endfunction()

# tern_add_module(NAME <name> [DEPS <tern modules>] [LIBS <link libraries>])
function(tern_add_module)
    cmake_parse_arguments(M "" "NAME" "DEPS;LIBS" ${ARGN})
    file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${M_NAME}/*.c)
    add_library(tern_${M_NAME} STATIC ${srcs})
    target_include_directories(tern_${M_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
    get_property(present GLOBAL PROPERTY TERN_MODULES)
    foreach(dep ${M_DEPS})
        # A planned module that has no code yet is skipped; once it exists it is linked.
        if(dep IN_LIST present)
            target_link_libraries(tern_${M_NAME} PUBLIC tern_${dep})
        endif()
    endforeach()
    target_link_libraries(tern_${M_NAME} PUBLIC ${M_LIBS})
    tern_target_flags(tern_${M_NAME})
endfunction()

# tern_add_unit_tests(<module>): one cmocka executable and one ctest per tests/unit/<module>/test_*.c.
# Files named test_*_wrap.c may list linker wraps in a first-line comment: /* WRAP: write fsync */
function(tern_add_unit_tests module)
    file(GLOB tests CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/unit/${module}/test_*.c)
    foreach(t ${tests})
        get_filename_component(name ${t} NAME_WE)
        set(exe unit_${module}_${name})
        add_executable(${exe} ${t})
        set_target_properties(${exe} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
        target_link_libraries(${exe} PRIVATE tern_${module} PkgConfig::CMOCKA)
        target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/tests/unit)
        file(STRINGS ${t} first LIMIT_COUNT 1)
        if(first MATCHES "WRAP:([^*]*)\\*")
            string(STRIP "${CMAKE_MATCH_1}" wraps)
            string(REPLACE " " ";" wraps "${wraps}")
            foreach(w ${wraps})
                target_link_options(${exe} PRIVATE "-Wl,--wrap=${w}")
            endforeach()
        endif()
        tern_target_flags(${exe})
        add_test(NAME unit/${module}/${name} COMMAND ${exe}
                 WORKING_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
        set_tests_properties(unit/${module}/${name} PROPERTIES TIMEOUT 300 LABELS unit
            ENVIRONMENT "TERN_TEST_TMP=${CMAKE_BINARY_DIR}/tmp;CMOCKA_MESSAGE_OUTPUT=stdout")
    endforeach()
endfunction()

# tern_module(...) declares a module of the layering below; a folder with no .c file yet is
# skipped, so the list can name what the design plans before it exists.
function(tern_module)
    cmake_parse_arguments(M "" "NAME" "DEPS;LIBS" ${ARGN})
    file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${M_NAME}/*.c)
    if(srcs)
        tern_add_module(${ARGN})
        set_property(GLOBAL APPEND PROPERTY TERN_MODULES ${M_NAME})
    endif()
endfunction()
