// test_dns: a tiny, real DNS server for sluice's integration tests (`server ...
// resolve` with `resolver`). UDP only, one process, no library beyond libc.
//
// Build: g++ -std=c++20 -O2 -Wall -Wextra -o objs/test_dns t/lib/test_dns.cc
// Usage: test_dns --port N --zone FILE [--log FILE] [--address 127.x.y.z]
//
// --port 0 picks a free port. Once the socket is bound it prints one line to stdout,
//   test_dns: listening on 127.0.0.1:PORT
// so a harness can wait for it and learn the port.
//
// The zone file is read again for every query (write a new one with rename() so a
// query never sees half a file). One record a line, '#' starts a comment:
//   backend.test 1 A 127.0.0.2        name, TTL in seconds, type, address
//   backend.test 1 A 127.0.0.3        several lines: several addresses
//   backend.test 1 AAAA ::1
//   broken.test 0 SERVFAIL            answer SERVFAIL for the name
//   silent.test 0 DROP                never answer (the client times out)
// Names are matched without regard to case, with or without the final dot; the
// question goes back exactly as it came (resolvers randomize the case of names).
// A name that is not in the file gets NXDOMAIN; a name that is, but has no record of
// the type asked, gets NOERROR without answers (NODATA). A zone file that cannot be
// read gives SERVFAIL.
//
// Queries are parsed strictly and anything else is dropped without an answer: a
// 12-byte header with QR=0, QDCOUNT=1, ANCOUNT=0, NSCOUNT=0, ARCOUNT 0 or 1 (an EDNS
// OPT record, which is accepted and not echoed), one question without compression
// (labels of 1..63 bytes, a name of at most 255), and nothing after it. An opcode
// other than QUERY gets NOTIMP, a class other than IN gets REFUSED.
//
// With --log FILE, every query answered or dropped appends one line:
//   backend.test A NOERROR 2       lowercased name, type, outcome, answers
//   gone.test A NXDOMAIN 0
//   backend.test AAAA NODATA 0
//   silent.test A DROP 0
//   malformed 0 DROP 0             a datagram that was not a valid query
// so tests can count the lookups of a name. SIGTERM, SIGINT and SIGQUIT stop it;
// SIGHUP is accepted and ignored (the zone is re-read anyway).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kMaxDatagram = 512;      // classic DNS over UDP; no EDNS answers
constexpr size_t kMaxQuery = 4096;         // bigger queries are dropped
constexpr size_t kMaxZoneBytes = 1 << 20;  // a bigger zone file is an error (SERVFAIL)
constexpr size_t kMaxName = 255;
constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAAAA = 28;
constexpr uint16_t kTypeOPT = 41;
constexpr uint16_t kClassIN = 1;
constexpr int kNoError = 0, kServFail = 2, kNxDomain = 3, kNotImp = 4, kRefused = 5;

volatile sig_atomic_t g_stop = 0;

void on_signal(int sig) {
    if (sig != SIGHUP) g_stop = 1;
}

struct Options {
    uint16_t port = 0;
    bool port_given = false;
    std::string zone;
    std::string log;
    in_addr address{htonl(INADDR_LOOPBACK)};
};

struct Record {
    std::string name;  // lowercase, no final dot
    uint32_t ttl = 0;
    enum Kind { A, AAAA, ServFail, Drop } kind = A;
    unsigned char addr[16] = {};
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return out;
}

std::string canonical_name(std::string_view s) {
    if (!s.empty() && s.back() == '.') s.remove_suffix(1);
    return lower(s);
}

template <typename T>
std::optional<T> parse_number(std::string_view s) {
    T value{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return value;
}

std::vector<std::string_view> split_words(std::string_view line) {
    std::vector<std::string_view> words;
    size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
        size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
        if (i > start) words.push_back(line.substr(start, i - start));
    }
    return words;
}

// The records of the zone file, or nullopt when it cannot be read. Lines that do not
// parse are reported on stderr and skipped.
// A name for the log line: printable ASCII, lowercase, other bytes as \xNN.
std::string log_name(std::string_view name) {
    std::string out;
    for (char c : canonical_name(name)) {
        auto u = static_cast<unsigned char>(c);
        if (u > 0x20 && u < 0x7f && u != '\\') {
            out.push_back(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", u);
            out += hex;
        }
    }
    return out.empty() ? "." : out;
}

std::optional<std::vector<Record>> read_zone(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::string text;
    char buf[8192];
    while (true) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || text.size() + size_t(n) > kMaxZoneBytes) {
            close(fd);
            return std::nullopt;
        }
        if (n == 0) break;
        text.append(buf, size_t(n));
    }
    close(fd);
    std::vector<Record> records;
    size_t at = 0;
    int line_number = 0;
    while (at < text.size()) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        std::string_view line(text.data() + at, end - at);
        at = end + 1;
        ++line_number;
        if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        auto words = split_words(line);
        if (words.empty()) continue;
        Record r;
        bool ok = words.size() >= 3 && words[0].size() <= kMaxName;
        auto ttl = ok ? parse_number<uint32_t>(words[1]) : std::nullopt;
        ok = ok && ttl && *ttl <= 0x7fffffff;
        if (ok) {
            r.name = canonical_name(words[0]);
            r.ttl = *ttl;
            std::string type = lower(words[2]);
            std::string value = words.size() > 3 ? std::string(words[3]) : "";
            if (type == "a" && words.size() == 4) {
                r.kind = Record::A;
                ok = inet_pton(AF_INET, value.c_str(), r.addr) == 1;
            } else if (type == "aaaa" && words.size() == 4) {
                r.kind = Record::AAAA;
                ok = inet_pton(AF_INET6, value.c_str(), r.addr) == 1;
            } else if (type == "servfail" && words.size() == 3) {
                r.kind = Record::ServFail;
            } else if (type == "drop" && words.size() == 3) {
                r.kind = Record::Drop;
            } else {
                ok = false;
            }
        }
        if (!ok) {
            std::fprintf(stderr, "test_dns: %s:%d: ignored: %.*s\n", path.c_str(), line_number,
                         int(line.size()), line.data());
            continue;
        }
        records.push_back(std::move(r));
    }
    return records;
}

struct Query {
    uint16_t id = 0;
    uint16_t flags = 0;
    size_t question_end = 0;  // header + question, echoed as is
    std::string name;         // dotted, as received (case kept)
    uint16_t qtype = 0;
    uint16_t qclass = 0;
};

uint16_t get16(const unsigned char* p) { return uint16_t(p[0] << 8 | p[1]); }

void put16(std::string& out, uint16_t v) {
    out.push_back(char(v >> 8));
    out.push_back(char(v & 0xff));
}

void put32(std::string& out, uint32_t v) {
    put16(out, uint16_t(v >> 16));
    put16(out, uint16_t(v & 0xffff));
}

// A strictly valid query, or nullopt (dropped).
std::optional<Query> parse_query(const unsigned char* p, size_t len) {
    if (len < 12) return std::nullopt;
    Query q;
    q.id = get16(p);
    q.flags = get16(p + 2);
    if (q.flags & 0x8000) return std::nullopt;  // a response
    if (get16(p + 4) != 1 || get16(p + 6) != 0 || get16(p + 8) != 0) return std::nullopt;
    uint16_t arcount = get16(p + 10);
    if (arcount > 1) return std::nullopt;
    size_t at = 12;
    size_t name_len = 0;
    while (true) {
        if (at >= len) return std::nullopt;
        unsigned label = p[at++];
        if (label == 0) break;
        if (label > 63) return std::nullopt;  // compression or an extended label type
        if (at + label > len) return std::nullopt;
        name_len += label + 1;
        if (name_len > kMaxName) return std::nullopt;
        if (!q.name.empty()) q.name.push_back('.');
        q.name.append(reinterpret_cast<const char*>(p + at), label);
        at += label;
    }
    if (at + 4 > len) return std::nullopt;
    q.qtype = get16(p + at);
    q.qclass = get16(p + at + 2);
    at += 4;
    q.question_end = at;
    if (arcount == 1) {  // an EDNS OPT pseudo-record: root name, type 41, then rdata
        if (at + 11 > len || p[at] != 0 || get16(p + at + 1) != kTypeOPT) return std::nullopt;
        size_t rdlen = get16(p + at + 9);
        at += 11;
        if (at + rdlen != len) return std::nullopt;
        at += rdlen;
    }
    if (at != len) return std::nullopt;  // trailing bytes
    return q;
}

std::string type_text(uint16_t qtype) {
    if (qtype == kTypeA) return "A";
    if (qtype == kTypeAAAA) return "AAAA";
    return std::to_string(qtype);
}

void log_line(const Options& options, const std::string& line) {
    if (options.log.empty()) return;
    int fd = open(options.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t ignored = write(fd, line.data(), line.size());  // one write: whole lines
    (void)ignored;
    close(fd);
}

// The answer to `q`, or "" to drop it; `outcome` and `answers` are for the log.
std::string answer(const Options& options, const unsigned char* packet, const Query& q,
                   std::string& outcome, int& answers) {
    answers = 0;
    int rcode = kNoError;
    std::vector<const Record*> matches;
    std::optional<std::vector<Record>> zone;
    int opcode = (q.flags >> 11) & 0xf;
    if (opcode != 0) {
        rcode = kNotImp;
    } else if (q.qclass != kClassIN) {
        rcode = kRefused;
    } else if (!(zone = read_zone(options.zone))) {
        rcode = kServFail;
    } else {
        std::string name = canonical_name(q.name);
        bool known = false;
        for (const Record& r : *zone) {
            if (r.name != name) continue;
            known = true;
            if (r.kind == Record::Drop) {
                outcome = "DROP";
                return "";
            }
            if (r.kind == Record::ServFail) rcode = kServFail;
            if ((r.kind == Record::A && q.qtype == kTypeA) || (r.kind == Record::AAAA && q.qtype == kTypeAAAA))
                matches.push_back(&r);
        }
        if (!known) rcode = kNxDomain;
        if (rcode != kNoError) matches.clear();
    }
    static const char* const kRcodeText[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
    outcome = kRcodeText[rcode];
    if (rcode == kNoError && matches.empty()) outcome = "NODATA";

    std::string out;
    put16(out, q.id);
    bool truncated = false;
    std::string records;
    for (const Record* r : matches) {
        size_t rdlen = r->kind == Record::A ? 4 : 16;
        if (q.question_end + records.size() + 12 + rdlen > kMaxDatagram) {
            truncated = true;
            break;
        }
        put16(records, 0xc00c);  // the name: a pointer to the question's
        put16(records, q.qtype);
        put16(records, kClassIN);
        put32(records, r->ttl);
        put16(records, uint16_t(rdlen));
        records.append(reinterpret_cast<const char*>(r->addr), rdlen);
        ++answers;
    }
    // QR, the opcode, AA, TC, RD as asked, RA clear, the rcode.
    uint16_t flags = uint16_t(0x8000 | (q.flags & 0x7800) | 0x0400 | (truncated ? 0x0200 : 0) |
                              (q.flags & 0x0100) | rcode);
    put16(out, flags);
    put16(out, 1);
    put16(out, uint16_t(answers));
    put16(out, 0);
    put16(out, 0);
    out.append(reinterpret_cast<const char*>(packet + 12), q.question_end - 12);
    out += records;
    return out;
}

std::optional<Options> parse_options(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (i + 1 >= argc) return std::nullopt;
        std::string_view value = argv[++i];
        if (arg == "--port") {
            auto port = parse_number<uint16_t>(value);
            if (!port) return std::nullopt;
            options.port = *port;
            options.port_given = true;
        } else if (arg == "--zone") {
            options.zone = value;
        } else if (arg == "--log") {
            options.log = value;
        } else if (arg == "--address") {
            if (inet_pton(AF_INET, argv[i], &options.address) != 1) return std::nullopt;
        } else {
            return std::nullopt;
        }
    }
    if (!options.port_given || options.zone.empty()) return std::nullopt;
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    auto parsed = parse_options(argc, argv);
    if (!parsed) {
        std::fprintf(stderr, "usage: test_dns --port N --zone FILE [--log FILE] [--address IPV4]\n");
        return 2;
    }
    const Options& options = *parsed;
    struct sigaction action {};
    action.sa_handler = on_signal;  // no SA_RESTART: recvfrom returns EINTR
    sigemptyset(&action.sa_mask);
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) sigaction(sig, &action, nullptr);
    signal(SIGPIPE, SIG_IGN);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        std::perror("test_dns: socket");
        return 1;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(options.port);
    addr.sin_addr = options.address;
    socklen_t addr_len = sizeof addr;
    char address_text[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &options.address, address_text, sizeof address_text);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) {
        std::fprintf(stderr, "test_dns: cannot bind %s:%u: %s\n", address_text, options.port,
                     std::strerror(errno));
        return 1;
    }
    std::printf("test_dns: listening on %s:%u\n", address_text, ntohs(addr.sin_port));
    std::fflush(stdout);

    unsigned char packet[kMaxQuery + 1];
    while (!g_stop) {
        sockaddr_storage from{};
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(fd, packet, sizeof packet, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::perror("test_dns: recvfrom");
            return 1;
        }
        std::optional<Query> q;
        if (size_t(n) <= kMaxQuery) q = parse_query(packet, size_t(n));
        if (!q) {
            log_line(options, "malformed 0 DROP 0\n");
            continue;
        }
        std::string outcome;
        int answers = 0;
        std::string reply = answer(options, packet, *q, outcome, answers);
        log_line(options, log_name(q->name) + " " + type_text(q->qtype) + " " + outcome + " " +
                              std::to_string(answers) + "\n");
        if (!reply.empty())
            sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
    }
    close(fd);
    return 0;
}
