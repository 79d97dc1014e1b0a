// The request's life cycle as driven by the connection: run the phases,
// answer a head that failed to parse, finish (log phase), abort.
#pragma once

namespace sluice::http {

class Request;

void run_request(Request&);
void reject_request(Request&, int status);
void complete_request(Request&);   // log phase; the connection destroys the request after
void abort_request(Request&);      // the connection closed under the request
void output_drained(Request&);     // everything queued was written
}  // namespace sluice::http
