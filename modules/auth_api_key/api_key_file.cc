#include "api_key_file.h"

#include <openssl/evp.h>

#include <memory>

namespace sluice::auth_api_key {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

// The next whitespace-separated field of `line`, removed from it.
std::string_view next_field(std::string_view& line) {
    size_t start = 0;
    while (start < line.size() && is_blank(line[start])) ++start;
    size_t end = start;
    while (end < line.size() && !is_blank(line[end])) ++end;
    std::string_view field = line.substr(start, end - start);
    line.remove_prefix(end);
    return field;
}

}  // namespace

bool valid_consumer_name(std::string_view name) {
    if (name.empty() || name.size() > 128) return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  std::string_view("._-@:+").find(c) != std::string_view::npos;
        if (!ok) return false;
    }
    return true;
}

bool parse_digest_hex(std::string_view hex, Digest& out) {
    if (hex.size() != 64) return false;
    for (size_t i = 0; i < 32; ++i) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = uint8_t(hi << 4 | lo);
    }
    return true;
}

bool ApiKeyTable::add_line(std::string_view line, std::string& error) {
    std::string_view consumer = next_field(line);
    if (consumer.empty() || consumer[0] == '#') return true;  // blank line or comment
    std::string_view hex = next_field(line);
    std::string_view rest = next_field(line);
    if (!valid_consumer_name(consumer)) {
        error = "invalid consumer name \"" + std::string(consumer.substr(0, 128)) + "\" (letters, digits, \"._-@:+\")";
        return false;
    }
    Digest digest;
    if (hex.empty()) {
        error = "no SHA-256 digest after consumer \"" + std::string(consumer) + "\"";
        return false;
    }
    if (!parse_digest_hex(hex, digest)) {
        // Do not echo it: someone may have pasted a plain key here.
        error = "the SHA-256 digest of consumer \"" + std::string(consumer) + "\" must be 64 hex digits";
        return false;
    }
    if (!rest.empty() && rest[0] != '#') {
        error = "unexpected text after the digest of consumer \"" + std::string(consumer) + "\"";
        return false;
    }
    if (by_digest_.contains(digest)) {
        error = "the key of consumer \"" + std::string(consumer) + "\" is already listed (for \"" +
                consumers_[by_digest_[digest]] + "\")";
        return false;
    }
    consumers_.emplace_back(consumer);
    by_digest_.emplace(digest, consumers_.size() - 1);
    return true;
}

bool ApiKeyTable::add_file_text(std::string_view text, std::string& error) {
    size_t line_number = 0;
    while (!text.empty()) {
        ++line_number;
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (line.find('\0') != std::string_view::npos) {
            error = "line " + std::to_string(line_number) + ": a NUL byte (not a text file?)";
            return false;
        }
        std::string why;
        if (!add_line(line, why)) {
            error = "line " + std::to_string(line_number) + ": " + why;
            return false;
        }
    }
    return true;
}

bool sha256(std::string_view data, Digest& out) {
    // One context per process, reused: no allocation per request. Workers are
    // single-threaded.
    struct CtxFree {
        void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
    };
    static std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
    unsigned int len = 0;
    return ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1 &&
           EVP_DigestUpdate(ctx.get(), data.data(), data.size()) == 1 &&
           EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == out.size();
}

}  // namespace sluice::auth_api_key
