#include "cli/insights_command.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <simdjson.h>
#include <chrono>
#include <cstdio>

#include "base/strings.h"
#include "cli/cli_flags.h"
#include "cli/event_stream.h"

namespace hivemesh::cli {
namespace {

using Clock = std::chrono::steady_clock;

// A connected socket to host:port, or why not (UNAVAILABLE / INVALID_ARGUMENT).
absl::StatusOr<int> Dial(const std::string& host_port, int timeout_ms) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size()) {
    return absl::InvalidArgumentError(StrCat("--node '", host_port, "' is not host:port"));
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string port = host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int e = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); e != 0) {
    return absl::UnavailableError(StrCat("cannot resolve ", host_port, ": ", gai_strerror(e)));
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(StrCat("cannot connect to ", host_port));
  return fd;
}

// Reads what is there within `wait_ms` (-1: no limit): the bytes, "" at the node's end of the
// connection, or DEADLINE_EXCEEDED when nothing came.
absl::StatusOr<std::string> ReadSome(int fd, int wait_ms) {
  pollfd p{fd, POLLIN, 0};
  const int ready = ::poll(&p, 1, wait_ms);
  if (ready == 0) return absl::DeadlineExceededError("nothing came in time");
  if (ready < 0) return absl::UnavailableError("poll failed");
  char buf[65536];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n < 0) return absl::UnavailableError("the connection failed");
  return std::string(buf, static_cast<size_t>(n));
}

int Publish(const InsightsFlags& flags) {
  absl::StatusOr<std::string> values =
      flags.values == "-" ? ReadInputFile("-") : absl::StatusOr<std::string>(flags.values);
  if (!values.ok()) return Fail("pub", values.status());
  HttpClient client(flags.node.node, flags.node.timeout_ms);
  absl::StatusOr<HttpResult> reply =
      Call(client, "POST", "/v1/insights/" + UrlEncodeTopic(flags.topic), *values,
           {{"Content-Type", "application/json"}});
  if (!reply.ok()) return Fail("pub", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
    return kExitOk;
  }
  simdjson::dom::parser parser;
  simdjson::dom::object answer;
  std::string_view id;
  uint64_t seq = 0;
  if (parser.parse(reply->body).get(answer) != simdjson::SUCCESS || answer["id"].get(id) ||
      answer["seq"].get(seq)) {
    std::printf("%s\n", reply->body.c_str());
    return kExitOk;
  }
  std::printf("published %.*s (%s #%llu)\n", static_cast<int>(id.size()), id.data(),
              flags.topic.c_str(), static_cast<unsigned long long>(seq));
  return kExitOk;
}

int Subscribe(const InsightsFlags& flags) {
  std::string query;
  for (const std::string& f : flags.filters) {
    StrAppend(&query, query.empty() ? "?" : "&", "topic=", UrlEncodeTopic(f));
  }
  absl::StatusOr<int> fd = Dial(flags.node.node, flags.node.timeout_ms);
  if (!fd.ok()) return Fail("sub", fd.status());
  const std::string request =
      StrCat("GET /v1/insights/stream", query, " HTTP/1.1\r\nHost: ", flags.node.node,
             "\r\nAccept: text/event-stream\r\n\r\n");
  if (::send(*fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(*fd);
    return Fail("sub", absl::UnavailableError(StrCat("cannot send to ", flags.node.node)));
  }
  const Clock::time_point started = Clock::now();
  const auto left_ms = [&](int limit_ms) {
    if (limit_ms <= 0) return -1;
    const auto spent =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    return static_cast<int>(std::max<int64_t>(0, limit_ms - spent));
  };
  // The head, within --timeout-ms.
  std::string in;
  size_t head_end = std::string::npos;
  while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
    absl::StatusOr<std::string> more = ReadSome(*fd, left_ms(flags.node.timeout_ms));
    if (!more.ok() || more->empty() || in.size() > 64 * 1024) {
      ::close(*fd);
      return Fail("sub", absl::UnavailableError(StrCat("the node at ", flags.node.node,
                                                       " did not answer with a stream")));
    }
    in += *more;
  }
  const std::string head = in.substr(0, head_end);
  in.erase(0, head_end + 4);
  if (!head.starts_with("HTTP/1.1 200")) {
    // The refusal's body (a short JSON error): what came with the head, and a little more.
    absl::StatusOr<std::string> more = ReadSome(*fd, 200);
    if (more.ok()) in += *more;
    HttpResult refused;
    refused.status = head.size() >= 12 ? std::atoi(head.substr(9, 3).c_str()) : 0;
    refused.body = in;
    ::close(*fd);
    return Fail("sub", NodeAnswered(flags.node.node, refused));
  }
  EventStream stream;
  std::vector<std::string> events;
  int got = 0;
  int code = kExitOk;
  for (;;) {
    if (absl::Status s = stream.Feed(in, events); !s.ok()) {
      code = Fail("sub", absl::UnknownError(std::string(MessageOf(s))));
      break;
    }
    in.clear();
    for (const std::string& document : events) {
      const std::string line = flags.node.output == "json" ? document : FormatInsightLine(document);
      std::fwrite(line.data(), 1, line.size(), stdout);
      std::fputc('\n', stdout);
      std::fflush(stdout);
      if (flags.count > 0 && ++got >= flags.count) break;
    }
    events.clear();
    if (flags.count > 0 && got >= flags.count) break;
    if (stream.ended()) {
      code = Fail("sub", absl::UnavailableError(
                             StrCat("the node at ", flags.node.node, " ended the stream")));
      break;
    }
    const int wait = left_ms(flags.for_ms);
    if (wait == 0) break;
    absl::StatusOr<std::string> more = ReadSome(*fd, wait);
    if (absl::IsDeadlineExceeded(more.status())) break;  // --for-ms is over
    if (!more.ok() || more->empty()) {
      code = Fail("sub", absl::UnavailableError(
                             StrCat("the node at ", flags.node.node, " closed the stream")));
      break;
    }
    in = *std::move(more);
  }
  ::close(*fd);
  return code;
}

}  // namespace

std::string UrlEncodeTopic(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' || c == '+') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string FormatInsightLine(std::string_view document) {
  simdjson::dom::parser parser;
  simdjson::dom::object in;
  std::string_view topic, node;
  uint64_t seq = 0;
  simdjson::dom::element values;
  if (parser.parse(document.data(), document.size()).get(in) != simdjson::SUCCESS ||
      in["topic"].get(topic) || in["node"].get(node) || in["seq"].get(seq) ||
      in["values"].get(values)) {
    return std::string(document);
  }
  return StrCat(topic, " ", simdjson::minify(values), " (", node, " #", seq, ")");
}

void AddInsightsCommands(CLI::App& app, InsightsFlags& flags) {
  flags.pub = app.add_subcommand("pub", "publish an insight at a node (docs/insights.md)");
  flags.pub->add_option("topic", flags.topic, "the topic, e.g. site/line1/alerts/vibration")
      ->required();
  flags.pub
      ->add_option("values", flags.values, "the insight's values: a JSON object, or - to read it")
      ->required();
  AddNodeFlags(flags.pub, flags.node,
               "  hivemesh pub site/line1/alerts/vibration '{\"score\": 0.93}'\n"
               "  echo '{\"count\": 3}' | hivemesh pub cams/7/people - --node 10.0.0.7:8000");
  flags.sub = app.add_subcommand(
      "sub", "print the insights that match topic filters, published anywhere in the mesh");
  flags.sub
      ->add_option("filters", flags.filters, "MQTT topic filters ('+' one level, '#' the rest)")
      ->required();
  flags.sub->add_option("--count", flags.count, "stop after this many insights (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  flags.sub->add_option("--for-ms", flags.for_ms, "stop after this long (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  AddNodeFlags(flags.sub, flags.node,
               "  hivemesh sub 'site/+/alerts/#'\n"
               "  hivemesh sub cams/+/people --count 10 -o json");
}

bool RunInsights(const InsightsFlags& flags, int* exit_code) {
  if (flags.pub->parsed()) {
    *exit_code = Publish(flags);
    return true;
  }
  if (flags.sub->parsed()) {
    *exit_code = Subscribe(flags);
    return true;
  }
  return false;
}

}  // namespace hivemesh::cli
