#include "cli/issuer_command.h"

#include <simdjson.h>

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <tuple>

#include "absl/strings/str_split.h"
#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "cli/cli_flags.h"
#include "cli/table.h"
#include "codec/json_writer.h"
#include "identity/certs.h"
#include "identity/issuer.h"
#include "identity/key_file.h"
#include "identity/node_key.h"

namespace hivemesh::cli {
namespace {

std::string Remaining(int64_t seconds) {
  if (seconds <= 0) return "expired";
  if (seconds >= 86400) return StrCat(seconds / 86400, "d", (seconds % 86400) / 3600, "h");
  if (seconds >= 3600) return StrCat(seconds / 3600, "h", (seconds % 3600) / 60, "m");
  return StrCat(seconds / 60, "m", seconds % 60, "s");
}

}  // namespace

CLI::App* AddTokenCommand(CLI::App& app, TokenFlags& flags) {
  CLI::App* cmd = app.add_subcommand("token", "create, list and revoke the mesh's join tokens");
  cmd->require_subcommand(1);
  const std::string examples =
      "  hivemesh token create --ttl 24h --uses 10\n"
      "  hivemesh token create --role issuer --uses 1\n"
      "  hivemesh token create --role client --name dashboard --models yolo,resnet --ttl 30d\n"
      "  hivemesh token list\n"
      "  hivemesh token revoke 3f9a0c1d\n"
      "  hivemesh token revoke --client dashboard";
  for (CLI::App** sub : {&flags.create, &flags.list, &flags.revoke}) {
    const char* name = sub == &flags.create ? "create" : sub == &flags.list ? "list" : "revoke";
    const char* what = sub == &flags.create ? "make a join token (printed once: keep it secret)"
                       : sub == &flags.list ? "list the tokens (never their secrets)"
                                            : "revoke a join token by its id, or every bearer "
                                              "token of a client (--client NAME)";
    *sub = cmd->add_subcommand(name, what);
    AddNodeFlags(*sub, flags.node, examples);
    (*sub)->add_option("--admin-token-file", flags.admin_token_file,
                       "file holding the node's admin token (admin_access: token)");
  }
  flags.create
      ->add_option("--role", flags.role,
                   "node or operator (a join token), issuer (a join token that grants issuer "
                   "rights too: made where the root key is), or client (a bearer token for "
                   "calling models, with --name and --models)")
      ->check(CLI::IsMember({"node", "operator", "issuer", "client"}));
  flags.create->add_option("--name", flags.name, "--role client: the client's name");
  flags.create->add_option("--models", flags.models,
                           "--role client: the models it may call, comma-separated ('*': all)");
  flags.create->add_option("--ttl", flags.ttl, "how long it may be used: 90s, 30m, 24h, 7d");
  flags.create->add_option("--uses", flags.uses, "how many joins it allows (0: unlimited)")
      ->check(CLI::NonNegativeNumber);
  CLI::Option* id = flags.revoke->add_option("id", flags.id, "the join token's id (8 hex digits)");
  CLI::Option* client = flags.revoke->add_option(
      "--client", flags.client,
      "revoke this client's bearer tokens issued so far: every node refuses them within seconds");
  id->excludes(client);
  return cmd;
}

absl::StatusOr<std::string> FormatTokenList(std::string_view json, int64_t now_unix) {
  simdjson::dom::parser parser;
  simdjson::dom::array tokens;
  if (parser.parse(json.data(), json.size())["tokens"].get(tokens) != simdjson::SUCCESS) {
    return absl::UnknownError("the node's token list is not {\"tokens\": [...]}");
  }
  std::vector<Row> rows = {{"ID", "ROLE", "EXPIRES IN", "USED", "STATE", "CREATED BY"}};
  for (simdjson::dom::element t : tokens) {
    std::string_view id, role, by;
    int64_t expires = 0, uses = 0, used = 0;
    bool revoked = false;
    if (t["id"].get(id) || t["role"].get(role) || t["created_by"].get(by) ||
        t["expires"].get(expires) || t["uses"].get(uses) || t["used"].get(used) ||
        t["revoked"].get(revoked)) {
      return absl::UnknownError("a token in the node's list lacks a field");
    }
    const bool used_up = uses > 0 && used >= uses;
    rows.push_back({std::string(id), std::string(role), Remaining(expires - now_unix),
                    uses > 0 ? StrCat(used, "/", uses) : StrCat(used),
                    revoked   ? "revoked"
                    : used_up ? "used up"
                              : "valid",
                    std::string(by)});
  }
  return FormatTable(rows, {3});
}

CLI::App* AddNodeCommand(CLI::App& app, NodeCommandFlags& flags) {
  CLI::App* cmd = app.add_subcommand("node", "manage the mesh's nodes at an issuer node");
  cmd->require_subcommand(1);
  flags.revoke = cmd->add_subcommand(
      "revoke", "revoke a member's key: it is refused renewal and joins from now on");
  AddNodeFlags(flags.revoke, flags.node, "  hivemesh node revoke cam-7");
  flags.revoke->add_option("--admin-token-file", flags.admin_token_file,
                           "file holding the node's admin token (admin_access: token)");
  flags.revoke->add_option("name", flags.name, "the member's name")->required();
  return cmd;
}

int RunNode(const NodeCommandFlags& flags) {
  std::string body;
  JsonWriter w(body);
  w.BeginObject().Key("name").String(flags.name).EndObject();
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/revocations", body);
  if (!reply.ok()) return Fail("node revoke", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
  } else {
    std::printf("revoked %s: its key is refused renewal and joins\n", flags.name.c_str());
  }
  return kExitOk;
}

int RunToken(const TokenFlags& flags) {
  if (flags.create->parsed()) {
    std::string body;
    JsonWriter w(body);
    w.BeginObject();
    w.Key("role").String(flags.role);
    w.Key("ttl").String(flags.ttl);
    if (flags.role == "client") {
      if (flags.name.empty() || flags.models.empty()) {
        return Fail("token create",
                    absl::InvalidArgumentError("--role client needs --name and --models"));
      }
      w.Key("name").String(flags.name);
      w.Key("models").BeginArray();
      for (absl::string_view m : absl::StrSplit(flags.models, ',', absl::SkipEmpty())) {
        w.String(std::string_view(m.data(), m.size()));
      }
      w.EndArray();
    } else {
      w.Key("uses").Int(flags.uses);
    }
    w.EndObject();
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/tokens", body);
    if (!reply.ok()) return Fail("token create", reply.status());
    if (flags.node.output == "json") {
      std::printf("%s\n", reply->body.c_str());
      return kExitOk;
    }
    simdjson::dom::parser parser;
    std::string_view token;
    if (parser.parse(reply->body)["token"].get(token) != simdjson::SUCCESS) {
      return Fail("token create", absl::UnknownError("the node's answer holds no token"));
    }
    std::printf("%.*s\n", static_cast<int>(token.size()), token.data());
    return kExitOk;
  }
  if (flags.list->parsed()) {
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "GET", "/v1/mesh/tokens");
    if (!reply.ok()) return Fail("token list", reply.status());
    if (flags.node.output == "json") {
      std::printf("%s\n", reply->body.c_str());
      return kExitOk;
    }
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    absl::StatusOr<std::string> table = FormatTokenList(reply->body, now);
    if (!table.ok()) return Fail("token list", table.status());
    std::fputs(table->c_str(), stdout);
    return kExitOk;
  }
  if (flags.id.empty() && flags.client.empty()) {
    return Fail("token revoke",
                absl::InvalidArgumentError("name a join token's id, or --client NAME"));
  }
  if (!flags.client.empty()) {
    std::string body;
    JsonWriter w(body);
    w.BeginObject().Key("name").String(flags.client).Key("tokens").Bool(true).EndObject();
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/revocations", body);
    if (!reply.ok()) return Fail("token revoke", reply.status());
    std::printf(
        "client %s's bearer tokens issued so far are revoked; every node refuses them "
        "within seconds\n",
        flags.client.c_str());
    return kExitOk;
  }
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "DELETE", StrCat("/v1/mesh/tokens/", flags.id));
  if (!reply.ok()) return Fail("token revoke", reply.status());
  std::printf("revoked %s\n", flags.id.c_str());
  return kExitOk;
}

CLI::App* AddCertCommand(CLI::App& app, CertFlags& flags) {
  CLI::App* cmd =
      app.add_subcommand("cert", "certificates for the mesh's clients, at an issuer node");
  cmd->require_subcommand(1);
  flags.issue_client = cmd->add_subcommand(
      "issue-client",
      "make a key here and have the issuer certify it for a client (or an operator): NAME.key, "
      "NAME.pem (the certificate and its issuer's) and ca.pem (the mesh's roots) in --out");
  AddNodeFlags(flags.issue_client, flags.node,
               "  hivemesh cert issue-client cam-app --out /etc/cam-app\n"
               "  hivemesh cert issue-client alice --role operator --ttl 7d");
  flags.issue_client->add_option("--admin-token-file", flags.admin_token_file,
                                 "file holding the node's admin token (admin_access: token)");
  flags.issue_client->add_option("name", flags.name, "the client's name")->required();
  flags.issue_client->add_option("--role", flags.role, "client or operator")
      ->check(CLI::IsMember({"client", "operator"}));
  flags.issue_client->add_option("--ttl", flags.ttl,
                                 "how long it is valid: 24h, 30d (at most 365d)");
  flags.issue_client->add_option("--out", flags.out, "folder to write the files in");
  flags.revoke = cmd->add_subcommand(
      "revoke", "revoke a client certificate's key on every node (a stolen or retired one)");
  AddNodeFlags(flags.revoke, flags.node, "  hivemesh cert revoke /etc/cam-app/cam-app.pem");
  flags.revoke->add_option("--admin-token-file", flags.admin_token_file,
                           "file holding the node's admin token (admin_access: token)");
  flags.revoke->add_option("certificate", flags.cert_file, "the client's certificate (PEM)")
      ->required();
  return cmd;
}

namespace {

int RevokeClient(const CertFlags& flags) {
  absl::StatusOr<std::string> pem = ReadInputFile(flags.cert_file);
  absl::StatusOr<identity::Certificate> cert =
      pem.ok() ? identity::Certificate::FromPem(*pem) : pem.status();
  absl::StatusOr<identity::NodeIdentity> who = cert.ok() ? cert->Identity() : cert.status();
  if (!who.ok()) return Fail("cert revoke", who.status());
  if (!who->client) {
    return Fail("cert revoke",
                absl::InvalidArgumentError(StrCat(flags.cert_file, " is member ", who->name,
                                                  "'s certificate: hivemesh node revoke ",
                                                  who->name, " revokes a member")));
  }
  std::string body;
  JsonWriter w(body);
  w.BeginObject();
  w.Key("name").String(who->name);
  w.Key("key").String(HexEncode(who->public_key));
  w.EndObject();
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/revocations", body);
  if (!reply.ok()) return Fail("cert revoke", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
  } else {
    std::printf("revoked client %s (%s): every node refuses its certificate\n", who->name.c_str(),
                std::string(identity::RoleName(who->role)).c_str());
  }
  return kExitOk;
}

}  // namespace

int RunCert(const CertFlags& flags) {
  if (flags.revoke->parsed()) return RevokeClient(flags);
  // The key is made here and never leaves this machine: the issuer sees its public half.
  const identity::NodeKey key = identity::NodeKey::Generate();
  std::string body;
  JsonWriter w(body);
  w.BeginObject();
  w.Key("name").String(flags.name);
  w.Key("role").String(flags.role);
  w.Key("public_key").String(HexEncode(key.public_key()));
  w.Key("ttl").String(flags.ttl);
  w.EndObject();
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/client-certificates", body);
  if (!reply.ok()) return Fail("cert issue-client", reply.status());
  simdjson::dom::parser parser;
  simdjson::dom::object answer;
  std::string_view cert, roots, spiffe;
  int64_t expires = 0;
  if (parser.parse(reply->body).get(answer) != simdjson::SUCCESS ||
      answer["certificate"].get(cert) != simdjson::SUCCESS ||
      answer["roots"].get(roots) != simdjson::SUCCESS ||
      answer["spiffe_id"].get(spiffe) != simdjson::SUCCESS ||
      answer["expires"].get(expires) != simdjson::SUCCESS) {
    return Fail("cert issue-client", absl::UnknownError("the node's answer holds no certificate"));
  }
  const std::string base = StrCat(flags.out, "/", flags.name);
  for (const auto& [path, data, mode] :
       {std::tuple<std::string, std::string, mode_t>{base + ".key", key.ToPem(), 0600},
        {base + ".pem", std::string(cert), 0644},
        {flags.out + "/ca.pem", std::string(roots), 0644}}) {
    if (absl::Status written = identity::ReplaceFile(path, data, mode); !written.ok()) {
      return Fail("cert issue-client", written);
    }
  }
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
  } else {
    std::printf("%.*s (%s) valid until unix %lld: %s.key, %s.pem, %s/ca.pem\n",
                static_cast<int>(spiffe.size()), spiffe.data(), flags.role.c_str(),
                static_cast<long long>(expires), base.c_str(), base.c_str(), flags.out.c_str());
  }
  return kExitOk;
}

CLI::App* AddPolicyCommand(CLI::App& app, PolicyFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "policy", "the mesh's authorization policy: who may call which model (docs/security.md)");
  cmd->require_subcommand(1);
  const std::string examples =
      "  hivemesh policy apply policy.yaml\n"
      "  hivemesh policy apply policy.yaml --operator-cert ops.pem --operator-key ops.key\n"
      "  hivemesh policy show";
  flags.apply = cmd->add_subcommand(
      "apply",
      "put a policy document in force on every node: signed here with an operator certificate's "
      "key (at any node), or signed by an issuer node (an admin call there)");
  flags.show = cmd->add_subcommand("show", "print the policy document in force on the node");
  for (CLI::App* sub : {flags.apply, flags.show}) {
    AddNodeFlags(sub, flags.node, examples);
    sub->add_option("--admin-token-file", flags.admin_token_file,
                    "file holding the node's admin token (admin_access: token)");
  }
  flags.apply->add_option("file", flags.file, "the YAML document ('-': standard input)")
      ->required();
  CLI::Option* cert = flags.apply->add_option(
      "--operator-cert", flags.operator_cert,
      "sign with this operator certificate (PEM, as cert issue-client wrote it)");
  CLI::Option* key = flags.apply->add_option("--operator-key", flags.operator_key,
                                             "that certificate's key (0600)");
  cert->needs(key);
  key->needs(cert);
  return cmd;
}

namespace {

// The document signed with the operator's key (api/mesh_policy.h, SignedPolicy): its version is
// the time of signing in milliseconds.
absl::StatusOr<std::string> SignPolicyAsOperator(const PolicyFlags& flags,
                                                 std::string_view document) {
  HM_ASSIGN_OR_RETURN(std::string chain, ReadInputFile(flags.operator_cert));
  HM_ASSIGN_OR_RETURN(identity::NodeKey key,
                      identity::ReadKeyFile(flags.operator_key, "operator key"));
  HM_ASSIGN_OR_RETURN(std::vector<identity::Certificate> certs,
                      identity::Certificate::AllFromPem(chain));
  if (certs.empty() || certs.front().public_key() != key.public_key()) {
    return absl::InvalidArgumentError(
        StrCat(flags.operator_key, " is not the key of the certificate in ", flags.operator_cert));
  }
  const uint64_t version =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
  std::string out;
  JsonWriter w(out);
  w.BeginObject();
  w.Key("version").Uint(version);
  w.Key("document").String(document);
  w.Key("signature").String(HexEncode(key.Sign(identity::PolicyMessage(version, document))));
  w.Key("signer").String(chain);
  w.EndObject();
  return out;
}

}  // namespace

int RunPolicy(const PolicyFlags& flags) {
  if (flags.apply->parsed()) {
    absl::StatusOr<std::string> document = ReadInputFile(flags.file);
    if (!document.ok()) return Fail("policy apply", document.status());
    if (!flags.operator_cert.empty()) {
      document = SignPolicyAsOperator(flags, *document);
      if (!document.ok()) return Fail("policy apply", document.status());
    }
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "PUT", "/v1/mesh/policy", *document);
    if (!reply.ok()) return Fail("policy apply", reply.status());
    if (flags.node.output == "json") {
      std::printf("%s\n", reply->body.c_str());
      return kExitOk;
    }
    simdjson::dom::parser parser;
    uint64_t version = 0;
    if (parser.parse(reply->body)["version"].get(version) != simdjson::SUCCESS) {
      return Fail("policy apply", absl::UnknownError("the node's answer holds no version"));
    }
    bool taken = true;
    if (simdjson::dom::element e; parser.parse(reply->body)["taken"].get(e) == simdjson::SUCCESS) {
      taken = e.is_bool() && e.get_bool().value();
    }
    std::printf(taken ? "policy version %llu in force; it reaches every node within seconds\n"
                      : "not taken: the node holds version %llu, newer than this one\n",
                static_cast<unsigned long long>(version));
    return kExitOk;
  }
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "GET", "/v1/mesh/policy");
  if (!reply.ok()) return Fail("policy show", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
    return kExitOk;
  }
  simdjson::dom::parser parser;
  simdjson::dom::object policy;
  uint64_t version = 0;
  std::string_view document;
  if (parser.parse(reply->body).get(policy) != simdjson::SUCCESS ||
      policy["version"].get(version) != simdjson::SUCCESS ||
      policy["document"].get(document) != simdjson::SUCCESS) {
    return Fail("policy show", absl::UnknownError("the node's answer is not a policy"));
  }
  if (version == 0 || document.empty()) {
    std::printf("# no policy: every caller may read and infer every model\n");
  } else {
    std::printf("# version %llu\n%.*s", static_cast<unsigned long long>(version),
                static_cast<int>(document.size()), document.data());
    if (document.back() != '\n') std::printf("\n");
  }
  return kExitOk;
}

CLI::App* AddCaCommand(CLI::App& app, CaFlags& flags) {
  CLI::App* cmd = app.add_subcommand("ca", "the mesh's root CA, at the node holding its key");
  cmd->require_subcommand(1);
  flags.rotate = cmd->add_subcommand(
      "rotate",
      "make a new root: every member trusts both at once, then the issuer signs under the new "
      "one and members take certificates under it at their next renewal");
  flags.export_key = cmd->add_subcommand(
      "export-key",
      "write the root key to a new file and remove it from the node (the root CA offline); the "
      "mesh goes on issuing and renewing, and only a root rotation needs the key back");
  flags.export_key->add_option("--out", flags.out, "the file to create (0600)")->required();
  flags.export_key->add_flag("--keep", flags.keep, "leave the key on the node too");
  flags.import_key = cmd->add_subcommand(
      "import-key", "bring an exported root key back to the node that created the mesh");
  flags.import_key->add_option("file", flags.file, "the exported key (PEM)")->required();
  for (CLI::App* sub : {flags.rotate, flags.export_key, flags.import_key}) {
    AddNodeFlags(sub, flags.node, StrCat("  hivemesh ca ", sub->get_name()));
    sub->add_option("--admin-token-file", flags.admin_token_file,
                    "file holding the node's admin token (admin_access: token)");
  }
  return cmd;
}

namespace {

// `ca export-key`: the file is made first (never over another), so that the key is not removed
// from the node when it could not be written.
int ExportRootKey(const CaFlags& flags) {
  const int fd = ::open(flags.out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail("ca export-key",
                absl::FailedPreconditionError(
                    StrCat(flags.out, ": ", std::strerror(errno),
                           errno == EEXIST ? " (the key is never written over a file)" : "")));
  }
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/ca/export-key",
                flags.keep ? R"({"remove": false})" : R"({"remove": true})");
  simdjson::dom::parser parser;
  std::string_view pem;
  absl::Status written = reply.ok() ? absl::OkStatus() : reply.status();
  if (written.ok() && parser.parse(reply->body)["key"].get(pem) != simdjson::SUCCESS) {
    written = absl::UnknownError("the node's answer holds no key");
  }
  for (size_t done = 0; written.ok() && done < pem.size();) {
    const ssize_t n = ::write(fd, pem.data() + done, pem.size() - done);
    if (n < 0) {
      written = absl::InternalError(StrCat(flags.out, ": ", std::strerror(errno)));
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (written.ok() && ::fsync(fd) != 0) {
    written = absl::InternalError(StrCat(flags.out, ": ", std::strerror(errno)));
  }
  ::close(fd);
  if (!written.ok()) {
    if (pem.empty()) ::unlink(flags.out.c_str());  // nothing of the key in it
    return Fail("ca export-key", written);
  }
  std::printf("root key written to %s%s\n", flags.out.c_str(),
              flags.keep ? " (and kept on the node)"
                         : "; the node no longer holds it: keep the file offline, and bring it "
                           "back with hivemesh ca import-key to rotate the root");
  return kExitOk;
}

}  // namespace

int RunCa(const CaFlags& flags) {
  if (flags.export_key->parsed()) return ExportRootKey(flags);
  if (flags.import_key->parsed()) {
    absl::StatusOr<std::string> pem = ReadInputFile(flags.file);
    if (!pem.ok()) return Fail("ca import-key", pem.status());
    absl::StatusOr<HttpResult> reply =
        AdminCall(flags.node, flags.admin_token_file, "PUT", "/v1/mesh/ca/key", *pem);
    if (!reply.ok()) return Fail("ca import-key", reply.status());
    std::printf("the root key is on the node again: hivemesh ca rotate works there\n");
    return kExitOk;
  }
  absl::StatusOr<HttpResult> reply =
      AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/ca/rotate", "{}");
  if (!reply.ok()) return Fail("ca rotate", reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
    return kExitOk;
  }
  simdjson::dom::parser parser;
  std::string_view root;
  if (parser.parse(reply->body)["root"].get(root) != simdjson::SUCCESS) {
    return Fail("ca rotate", absl::UnknownError("the node's answer names no root"));
  }
  std::printf(
      "new root %.*s: members trust it within seconds; join tokens made from now on name it\n",
      static_cast<int>(root.size()), root.data());
  return kExitOk;
}

CLI::App* AddGossipKeysCommand(CLI::App& app, GossipKeysFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "gossip-keys", "the keys that seal the mesh's gossip, handed to members over mutual TLS");
  cmd->require_subcommand(1);
  flags.rotate = cmd->add_subcommand(
      "rotate",
      "a new gossip key, at an issuer: every member accepts it, then seals with it, then the old "
      "one goes; each step once every live member holds the last");
  flags.show = cmd->add_subcommand("show", "the version of the keys a node holds (never a key)");
  for (CLI::App* sub : {flags.rotate, flags.show}) {
    AddNodeFlags(sub, flags.node, StrCat("  hivemesh gossip-keys ", sub->get_name()));
    sub->add_option("--admin-token-file", flags.admin_token_file,
                    "file holding the node's admin token (admin_access: token)");
  }
  return cmd;
}

int RunGossipKeys(const GossipKeysFlags& flags) {
  const bool rotate = flags.rotate->parsed();
  const char* what = rotate ? "gossip-keys rotate" : "gossip-keys show";
  absl::StatusOr<HttpResult> reply =
      rotate ? AdminCall(flags.node, flags.admin_token_file, "POST", "/v1/mesh/gossip-keys/rotate",
                         "{}")
             : AdminCall(flags.node, flags.admin_token_file, "GET", "/v1/mesh/gossip-keys", "");
  if (!reply.ok()) return Fail(what, reply.status());
  if (flags.node.output == "json") {
    std::printf("%s\n", reply->body.c_str());
    return kExitOk;
  }
  simdjson::dom::parser parser;
  simdjson::dom::object o;
  uint64_t version = 0, keys = 0;
  int64_t step = 0;
  if (parser.parse(reply->body).get(o) != simdjson::SUCCESS ||
      o["version"].get(version) != simdjson::SUCCESS) {
    return Fail(what, absl::UnknownError("the node's answer names no version"));
  }
  if (rotate) {
    std::printf(
        "gossip keys version %llu accepts a new key: members take it within seconds, "
        "and two more versions follow (it seals, the old key goes)\n",
        static_cast<unsigned long long>(version));
    return kExitOk;
  }
  if (o["keys"].get(keys) != simdjson::SUCCESS || o["step"].get(step) != simdjson::SUCCESS) {
    return Fail(what, absl::UnknownError("the node's answer holds no key count and step"));
  }
  std::printf("gossip keys version %llu, %llu key%s%s\n", static_cast<unsigned long long>(version),
              static_cast<unsigned long long>(keys), keys == 1 ? "" : "s",
              step == 1   ? " (rotating: the new key is accepted)"
              : step == 2 ? " (rotating: the new key seals, the old one is still accepted)"
                          : "");
  return kExitOk;
}

}  // namespace hivemesh::cli
