// HTTP-date parsing and formatting (RFC 9110 §5.6.7), shared by the static
// module's conditional requests and the response cache.
#include "core/http_date.h"

namespace sluice {

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = unsigned(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + int64_t(doe) - 719468;
}

namespace {

constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
constexpr std::string_view kWeekdays = "ThuFriSatSunMonTueWed";  // 1970-01-01 was a Thursday

struct DateCursor {
    std::string_view s;
    size_t i = 0;
    bool ok = true;

    bool eat(char c) {
        if (i < s.size() && s[i] == c) {
            ++i;
            return true;
        }
        return ok = false;
    }
    int number(size_t min_digits, size_t max_digits) {
        int v = 0;
        size_t n = 0;
        while (i < s.size() && n < max_digits && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0'), ++n;
        if (n < min_digits) ok = false;
        return v;
    }
    int month() {
        if (i + 3 > s.size()) return ok = false;
        size_t at = kMonths.find(s.substr(i, 3));
        if (at == std::string_view::npos || at % 3 != 0) return ok = false;
        i += 3;
        return int(at / 3) + 1;
    }
    void clock(int& h, int& m, int& sec) {
        h = number(2, 2);
        eat(':');
        m = number(2, 2);
        eat(':');
        sec = number(2, 2);
    }
};

bool leap_year(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int days_in_month(int year, int month) {
    static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && leap_year(year) ? 29 : kDays[month - 1];
}

void put2(char* p, int v) {
    p[0] = char('0' + v / 10);
    p[1] = char('0' + v % 10);
}

}  // namespace

int64_t parse_http_date(std::string_view s) {
    DateCursor c{s};
    size_t name_end = s.find_first_of(", ");
    if (name_end == std::string_view::npos) return -1;
    c.i = name_end;
    int day, mon, year, h, m, sec;
    if (c.eat(',')) {
        c.eat(' ');
        day = c.number(2, 2);
        bool rfc850 = c.i < s.size() && s[c.i] == '-';
        c.eat(rfc850 ? '-' : ' ');
        mon = c.month();
        c.eat(rfc850 ? '-' : ' ');
        year = rfc850 ? c.number(2, 2) : c.number(4, 4);
        if (rfc850) year += year < 70 ? 2000 : 1900;
        c.eat(' ');
        c.clock(h, m, sec);
        c.eat(' ');
        c.eat('G'), c.eat('M'), c.eat('T');
    } else {
        c.ok = true;
        c.eat(' ');
        mon = c.month();
        c.eat(' ');
        if (c.i < s.size() && s[c.i] == ' ') c.i++;
        day = c.number(1, 2);
        c.eat(' ');
        c.clock(h, m, sec);
        c.eat(' ');
        year = c.number(4, 4);
    }
    if (!c.ok || c.i != s.size() || day < 1 || day > days_in_month(year, mon) || h > 23 || m > 59 || sec > 60)
        return -1;
    return days_from_civil(year, unsigned(mon), unsigned(day)) * 86400 + h * 3600 + m * 60 + sec;
}

std::string_view format_http_date(int64_t t, char* buf) {
    if (t < 0) t = 0;
    int64_t days = t / 86400;
    int64_t secs = t % 86400;
    // civil_from_days (Howard Hinnant's algorithm), the inverse of days_from_civil.
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    unsigned doe = unsigned(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = int64_t(yoe) + era * 400 + (m <= 2);
    if (y > 9999) y = 9999;

    char* p = buf;
    std::string_view wd = kWeekdays.substr(size_t(days % 7) * 3, 3);
    p[0] = wd[0], p[1] = wd[1], p[2] = wd[2], p[3] = ',', p[4] = ' ';
    put2(p + 5, int(d));
    p[7] = ' ';
    std::string_view mn = kMonths.substr((m - 1) * 3, 3);
    p[8] = mn[0], p[9] = mn[1], p[10] = mn[2], p[11] = ' ';
    put2(p + 12, int(y / 100));
    put2(p + 14, int(y % 100));
    p[16] = ' ';
    put2(p + 17, int(secs / 3600));
    p[19] = ':';
    put2(p + 20, int(secs / 60 % 60));
    p[22] = ':';
    put2(p + 23, int(secs % 60));
    p[25] = ' ', p[26] = 'G', p[27] = 'M', p[28] = 'T';
    return {buf, kHttpDateLength};
}

}  // namespace sluice
