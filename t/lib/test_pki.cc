#include "test_pki.h"

#include <stdexcept>

namespace sluice::test {

namespace {

// `openssl ca` needs a database; this is the least it accepts.
std::string ca_config(const std::string& dir) {
    return "[ca]\ndefault_ca = test_ca\n"
           "[test_ca]\n"
           "dir = " + dir + "\n"
           "database = $dir/index.txt\n"
           "new_certs_dir = $dir/issued\n"
           "certificate = $dir/cert.pem\n"
           "private_key = $dir/key.pem\n"
           "serial = $dir/serial\n"
           "crlnumber = $dir/crlnumber\n"
           "default_md = sha256\n"
           "default_days = 30\n"
           "default_crl_days = 30\n"
           "unique_subject = no\n"
           "policy = policy_any\n"
           "[policy_any]\norganizationName = optional\ncommonName = supplied\n"
           "[req]\ndistinguished_name = req_dn\nprompt = no\n[req_dn]\nCN = unused\n";
}

std::string san_list(const std::vector<std::string>& names) {
    std::string list;
    for (const std::string& name : names) {
        if (!list.empty()) list += ",";
        bool ip = !name.empty() && name.find_first_not_of("0123456789.") == std::string::npos;
        list += (ip ? "IP:" : "DNS:") + name;
    }
    return list;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
}

}  // namespace

TestPki::TestPki() : dir_("sluice-pki") {
    make_ca("ca", "Sluice Test CA");
    make_ca("other_ca", "Untrusted Test CA");
}

std::string TestPki::openssl(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult result = run_command(argv, Millis{30000});
    if (result.exit_code != 0) {
        std::string line;
        for (const std::string& a : argv) line += a + " ";
        throw std::runtime_error("test PKI: " + line + "failed: " + result.output);
    }
    return result.output;
}

void TestPki::make_key(const std::string& path, KeyType type) {
    if (type == KeyType::Rsa)
        openssl({"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path});
    else
        openssl({"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path});
}

void TestPki::make_ca(const std::string& name, const std::string& common_name) {
    std::string dir = dir_.path(name);
    dir_.write(name + "/ca.cnf", ca_config(dir));
    dir_.write(name + "/index.txt", "");
    dir_.write(name + "/serial", name == "ca" ? "1000\n" : "8000\n");
    dir_.write(name + "/crlnumber", "01\n");
    dir_.write(name + "/issued/.keep", "");
    make_key(dir + "/key.pem", KeyType::Ecdsa);
    openssl({"req", "-new", "-x509", "-config", dir + "/ca.cnf", "-key", dir + "/key.pem", "-subj",
             "/O=Sluice Tests/CN=" + common_name, "-days", "30", "-addext",
             "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", dir + "/cert.pem"});
}

CertPair TestPki::issue(const std::string& ca, const std::string& file_name, const std::string& subject,
                        const std::string& extensions, KeyType type, const std::string& validity_args) {
    std::string base = dir_.path("certs/" + file_name + "-" + std::to_string(++issued_));
    dir_.write("certs/.keep", "");
    CertPair pair{base + ".crt", base + ".key", ""};
    make_key(pair.key, type);
    openssl({"req", "-new", "-config", dir_.path(ca + "/ca.cnf"), "-key", pair.key, "-subj", subject, "-out",
             base + ".csr"});
    dir_.write("certs/" + file_name + "-" + std::to_string(issued_) + ".ext", extensions);
    std::vector<std::string> args{"ca", "-batch", "-notext", "-config", dir_.path(ca + "/ca.cnf"), "-in",
                                  base + ".csr", "-out", pair.cert, "-extfile", base + ".ext"};
    if (!validity_args.empty()) {
        args.push_back("-startdate");
        args.push_back(validity_args.substr(0, validity_args.find(' ')));
        args.push_back("-enddate");
        args.push_back(validity_args.substr(validity_args.find(' ') + 1));
    }
    openssl(args);
    std::string serial = trim(openssl({"x509", "-noout", "-serial", "-in", pair.cert}));
    pair.serial = serial.substr(serial.find('=') + 1);
    return pair;
}

CertPair TestPki::server(std::string_view file_name, const std::vector<std::string>& names, KeyType type) {
    return issue("ca", std::string(file_name), "/O=Sluice Tests/CN=" + names.at(0),
                 "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=" + san_list(names) + "\n",
                 type, "");
}

CertPair TestPki::client(std::string_view common_name, bool trusted_ca, KeyType type) {
    return issue(trusted_ca ? "ca" : "other_ca", "client-" + std::string(common_name),
                 "/O=Sluice Tests/CN=" + std::string(common_name),
                 "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", type, "");
}

CertPair TestPki::expired_client(std::string_view common_name) {
    return issue("ca", "expired-client-" + std::string(common_name),
                 "/O=Sluice Tests/CN=" + std::string(common_name),
                 "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n", KeyType::Ecdsa,
                 "20200101000000Z 20200102000000Z");
}

CertPair TestPki::expired_server(std::string_view file_name, const std::vector<std::string>& names) {
    return issue("ca", "expired-" + std::string(file_name), "/O=Sluice Tests/CN=" + names.at(0),
                 "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=" + san_list(names) + "\n",
                 KeyType::Ecdsa, "20200101000000Z 20200102000000Z");
}

void TestPki::revoke(const CertPair& pair) {
    openssl({"ca", "-batch", "-config", dir_.path("ca/ca.cnf"), "-revoke", pair.cert});
}

std::string TestPki::crl() {
    std::string path = dir_.path("ca/crl-" + std::to_string(++issued_) + ".pem");
    openssl({"ca", "-batch", "-config", dir_.path("ca/ca.cnf"), "-gencrl", "-out", path});
    return path;
}

std::string TestPki::x509_field(const std::string& cert, const std::string& option) {
    return trim(openssl({"x509", "-noout", option, "-in", cert}));
}

}  // namespace sluice::test
