// Fuzzes the configuration reader with the input as a config text.
// clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_config.cc src/core/conf_file.cc src/core/conf_values.cc -o objs/fuzz_config
// objs/fuzz_config -max_total_time=60 t/fuzz/corpus/config
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/conf_file.h"
#include "core/conf_values.h"

namespace {

// Every statement must have a name, and every argument a line within the input.
void check_tree(const std::vector<sluice::conf::Statement>& statements, int last_line) {
    for (const auto& statement : statements) {
        if (statement.args.empty() || statement.line < 1 || statement.line > last_line) __builtin_trap();
        for (const auto& arg : statement.args) {
            if (arg.line < statement.line || arg.line > last_line) __builtin_trap();
        }
        if (!statement.block && !statement.children.empty()) __builtin_trap();
        check_tree(statement.children, last_line);
    }
}

// Arguments are what the value parsers see in real use.
void parse_values(const std::vector<sluice::conf::Statement>& statements) {
    for (const auto& statement : statements) {
        for (const auto& arg : statement.args) {
            unsigned per_seconds = 0;
            (void)sluice::conf::parse_size(arg.text);
            (void)sluice::conf::parse_time_ms(arg.text);
            (void)sluice::conf::parse_time_sec(arg.text);
            (void)sluice::conf::parse_number(arg.text);
            (void)sluice::conf::parse_flag(arg.text);
            (void)sluice::conf::parse_rate(arg.text, per_seconds);
        }
        parse_values(statement.children);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    sluice::conf::ParseOptions options;
    options.allow_include = false;  // the fuzzer must never reach the filesystem
    sluice::conf::Tree tree;
    sluice::conf::Error err;
    if (sluice::conf::parse_string(text, "fuzz.conf", options, tree, err)) {
        int lines = 1;
        for (char c : text) lines += c == '\n';
        check_tree(tree.statements, lines);
        parse_values(tree.statements);
    } else {
        if (err.message.empty() || err.file != "fuzz.conf" || err.line < 1) __builtin_trap();
    }
    return 0;
}
