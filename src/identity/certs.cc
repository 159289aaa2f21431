#include "identity/certs.h"
#include "identity/openssl_util.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <tuple>

#include "base/hex.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace hivemesh::identity {

struct Certificate::Impl {
  X509* x = nullptr;
  ~Impl() { X509_free(x); }
};

// Wraps an X509 the caller owns into a Certificate.
struct CertificateFactory {
  static Certificate Wrap(X509* x) {
    auto impl = std::make_shared<Certificate::Impl>();
    impl->x = x;
    return Certificate(std::move(impl));
  }
};

namespace {

constexpr std::string_view kSpiffe = "spiffe://";
constexpr std::string_view kRoleUri = "urn:hivemesh:role:";
constexpr std::string_view kLabelUri = "urn:hivemesh:label:";

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "hivemesh certificates: %s failed\n", what);
  std::abort();
}

using StorePtr = std::unique_ptr<X509_STORE, OpenSslDeleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr =
    std::unique_ptr<X509_STORE_CTX, OpenSslDeleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, OpenSslDeleter<BIGNUM, BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, OpenSslDeleter<GENERAL_NAMES, GENERAL_NAMES_free>>;

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    Fatal("RAND_bytes");
  }
  return HexEncode(raw);
}

PkeyPtr PublicKey(std::string_view raw) {
  return PkeyPtr(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
}

WallTime FromAsn1(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return WallTime{};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

void AddExtension(X509* x, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr || X509_add_ext(x, ext, -1) != 1) Fatal("adding an extension");
  X509_EXTENSION_free(ext);
}

void AddUris(X509* x, const std::vector<std::string>& uris) {
  NamesPtr names(sk_GENERAL_NAME_new_null());
  for (const std::string& uri : uris) {
    GENERAL_NAME* g = GENERAL_NAME_new();
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    if (g == nullptr || s == nullptr || ASN1_STRING_set(s, uri.data(), uri.size()) != 1) {
      Fatal("making a SAN");
    }
    GENERAL_NAME_set0_value(g, GEN_URI, s);
    sk_GENERAL_NAME_push(names.get(), g);
  }
  if (X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    Fatal("adding SANs");
  }
}

std::vector<std::string> UrisOf(X509* x) {
  std::vector<std::string> out;
  NamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr)));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names.get(), i);
    if (g->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = g->d.uniformResourceIdentifier;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return out;
}

// A new certificate: version 3, a random positive 128-bit serial, validity from
// now - kBackdate to now + validity, subject CN = `cn`, key `public_key` (raw Ed25519).
X509Ptr NewCertificate(std::string_view cn, std::string_view public_key, WallTime now,
                       seconds validity) {
  X509Ptr x(X509_new());
  if (x == nullptr || X509_set_version(x.get(), 2) != 1) Fatal("X509_new");
  std::string serial = *HexDecode(RandomHex(16));
  serial[0] = static_cast<char>(serial[0] & 0x7f);
  BnPtr bn(BN_bin2bn(reinterpret_cast<const unsigned char*>(serial.data()),
                     static_cast<int>(serial.size()), nullptr));
  if (bn == nullptr || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get())) == nullptr) {
    Fatal("setting a serial");
  }
  const time_t start = std::chrono::system_clock::to_time_t(now - kBackdate);
  const time_t end = std::chrono::system_clock::to_time_t(now + validity);
  if (ASN1_TIME_set(X509_getm_notBefore(x.get()), start) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(x.get()), end) == nullptr) {
    Fatal("setting validity");
  }
  X509_NAME* name = X509_get_subject_name(x.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.data()),
                                 static_cast<int>(cn.size()), -1, 0) != 1) {
    Fatal("setting the subject");
  }
  PkeyPtr pub = PublicKey(public_key);
  if (pub == nullptr || X509_set_pubkey(x.get(), pub.get()) != 1) Fatal("setting the key");
  return x;
}

void Sign(X509* x, X509* issuer, const NodeKey& key) {
  if (X509_set_issuer_name(x, X509_get_subject_name(issuer)) != 1) Fatal("setting the issuer");
  AddExtension(x, issuer, NID_subject_key_identifier, "hash");
  AddExtension(x, issuer, NID_authority_key_identifier, "keyid:always");
  PkeyPtr pkey = ToEvpKey(key);
  // Ed25519 signs the message itself: no digest is named.
  if (X509_sign(x, pkey.get(), nullptr) <= 0) Fatal("X509_sign");
}

bool ValidTextChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

PkeyPtr ToEvpKey(const NodeKey& key) {
  const std::string pem = key.ToPem();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (pkey == nullptr) Fatal("reading a node key");
  return pkey;
}

X509Ptr ToX509(const Certificate& cert) {
  X509_up_ref(cert.impl().x);
  return X509Ptr(cert.impl().x);
}

std::string_view RoleName(Role r) {
  switch (r) {
    case Role::kOperator:
      return "operator";
    case Role::kClient:
      return "client";
    default:
      return "node";
  }
}

absl::StatusOr<Role> ParseRole(std::string_view name) {
  if (name == "node") return Role::kNode;
  if (name == "operator") return Role::kOperator;
  if (name == "client") return Role::kClient;
  return absl::InvalidArgumentError(StrCat("role: '", name, "' is not node, operator or client"));
}

std::string NodeIdentity::SpiffeId() const {
  return StrCat(kSpiffe, mesh_id, client ? "/client/" : "/node/", name);
}

absl::Status CheckCertificateText(std::string_view text, std::string_view what) {
  if (text.empty() || text.size() > 63) {
    return absl::InvalidArgumentError(StrCat(what, ": must be 1 to 63 characters"));
  }
  for (char c : text) {
    if (!ValidTextChar(c)) {
      return absl::InvalidArgumentError(
          StrCat(what, ": '", text, "' has a character outside [A-Za-z0-9._-]"));
    }
  }
  if (text[0] == '.' || text[0] == '-') {
    return absl::InvalidArgumentError(StrCat(what, ": '", text, "' starts with '.' or '-'"));
  }
  return absl::OkStatus();
}

absl::Status CheckNodeIdentity(std::string_view name,
                               const std::map<std::string, std::string>& labels,
                               std::string_view public_key) {
  HM_RETURN_IF_ERROR(CheckCertificateText(name, "name"));
  for (const auto& [k, v] : labels) {
    HM_RETURN_IF_ERROR(CheckCertificateText(k, "label key"));
    HM_RETURN_IF_ERROR(CheckCertificateText(v, StrCat("label ", k)));
  }
  if (public_key.size() != kPublicKeyBytes) {
    return absl::InvalidArgumentError(
        StrCat("public key: ", public_key.size(), " bytes, not ", kPublicKeyBytes));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Certificate

absl::StatusOr<Certificate> Certificate::FromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (x == nullptr) {
    return absl::InvalidArgumentError(StrCat("not a PEM certificate: ", OpenSslError()));
  }
  return CertificateFactory::Wrap(x);
}

absl::StatusOr<Certificate> Certificate::FromDer(std::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (x == nullptr) {
    return absl::InvalidArgumentError(StrCat("not a DER certificate: ", OpenSslError()));
  }
  return CertificateFactory::Wrap(x);
}

absl::StatusOr<std::vector<Certificate>> Certificate::AllFromPem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::vector<Certificate> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.push_back(CertificateFactory::Wrap(x));
  }
  ERR_clear_error();  // the end of the text reads as an error
  if (out.empty()) return absl::InvalidArgumentError("no PEM certificate in the text");
  return out;
}

std::string Certificate::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(bio.get(), impl_->x) != 1) Fatal("PEM_write_bio_X509");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string Certificate::Der() const {
  unsigned char* buf = nullptr;
  const int len = i2d_X509(impl_->x, &buf);
  if (len <= 0) Fatal("i2d_X509");
  std::string out(reinterpret_cast<char*>(buf), static_cast<size_t>(len));
  OPENSSL_free(buf);
  return out;
}

std::string Certificate::Digest() const {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (X509_digest(impl_->x, EVP_sha256(), md, &len) != 1) Fatal("X509_digest");
  return HexEncode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::string Certificate::CommonName() const {
  X509_NAME* name = X509_get_subject_name(impl_->x);
  const int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return "";
  const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

std::string Certificate::public_key() const {
  EVP_PKEY* pkey = X509_get0_pubkey(impl_->x);
  if (pkey == nullptr || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) return "";
  std::string out(kPublicKeyBytes, '\0');
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(out.data()), &len) != 1 ||
      len != kPublicKeyBytes) {
    return "";
  }
  return out;
}

WallTime Certificate::not_before() const { return FromAsn1(X509_get0_notBefore(impl_->x)); }
WallTime Certificate::not_after() const { return FromAsn1(X509_get0_notAfter(impl_->x)); }

bool Certificate::is_ca() const { return X509_check_ca(impl_->x) != 0; }

std::string Certificate::MeshId() const {
  for (const std::string& uri : UrisOf(impl_->x)) {
    if (uri.starts_with(kSpiffe) && uri.find('/', kSpiffe.size()) == std::string::npos) {
      return uri.substr(kSpiffe.size());
    }
  }
  return "";
}

bool Certificate::SignedBy(const Certificate& issuer) const {
  EVP_PKEY* key = X509_get0_pubkey(issuer.impl_->x);
  const bool ok = key != nullptr && X509_verify(impl_->x, key) == 1;
  ERR_clear_error();
  return ok;
}

absl::StatusOr<NodeIdentity> Certificate::Identity() const {
  if (is_ca()) return absl::InvalidArgumentError("a CA certificate, not a node's");
  NodeIdentity id;
  id.name = CommonName();
  bool have_spiffe = false, have_role = false;
  for (const std::string& uri : UrisOf(impl_->x)) {
    std::string_view u = uri;
    if (u.starts_with(kSpiffe)) {
      u.remove_prefix(kSpiffe.size());
      size_t slash = u.find("/node/");
      size_t after = slash + 6;
      if (slash == std::string_view::npos) {
        slash = u.find("/client/");
        after = slash + 8;
        id.client = true;
      }
      if (slash == std::string_view::npos || u.substr(after) != id.name || have_spiffe) {
        return absl::InvalidArgumentError(StrCat("SAN ", uri, " does not name the subject"));
      }
      id.mesh_id = std::string(u.substr(0, slash));
      have_spiffe = true;
    } else if (u.starts_with(kRoleUri)) {
      HM_ASSIGN_OR_RETURN(id.role, ParseRole(u.substr(kRoleUri.size())));
      have_role = true;
    } else if (u.starts_with(kLabelUri)) {
      u.remove_prefix(kLabelUri.size());
      const size_t eq = u.find('=');
      if (eq == std::string_view::npos) {
        return absl::InvalidArgumentError(StrCat("SAN ", uri, " is not a label"));
      }
      id.labels.emplace(u.substr(0, eq), u.substr(eq + 1));
    }
  }
  if (!have_spiffe || !have_role) {
    return absl::InvalidArgumentError("not a hivemesh node certificate (no spiffe id or role)");
  }
  // A node is never of role client; a client certificate is of role client or operator.
  if ((id.role == Role::kClient && !id.client) || (id.client && id.role == Role::kNode)) {
    return absl::InvalidArgumentError(StrCat("role ", RoleName(id.role), " does not go with ",
                                             id.client ? "a client" : "a node", " certificate"));
  }
  id.public_key = public_key();
  if (id.public_key.empty()) return absl::InvalidArgumentError("the key is not Ed25519");
  BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(impl_->x), nullptr));
  char* hex = bn != nullptr ? BN_bn2hex(bn.get()) : nullptr;
  if (hex != nullptr) {
    id.serial = hex;
    OPENSSL_free(hex);
  }
  id.not_before = not_before();
  id.not_after = not_after();
  return id;
}

// ---------------------------------------------------------------------------------------------
// Issuing

std::string NewMeshId() { return RandomHex(16); }

Certificate MakeRootCertificate(const NodeKey& key, std::string_view mesh_id, WallTime now,
                                seconds validity) {
  X509Ptr x = NewCertificate(StrCat("hivemesh root ", mesh_id.substr(0, 8)), key.public_key(), now,
                             validity);
  AddExtension(x.get(), x.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(x.get(), x.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddUris(x.get(), {StrCat(kSpiffe, mesh_id)});
  Sign(x.get(), x.get(), key);
  return CertificateFactory::Wrap(x.release());
}

Certificate CrossSignRoot(const Certificate& new_root, const Certificate& old_root,
                          const NodeKey& old_root_key, WallTime now) {
  X509Ptr x = NewCertificate(new_root.CommonName(), new_root.public_key(), now,
                             std::chrono::duration_cast<seconds>(new_root.not_after() - now));
  AddExtension(x.get(), old_root.impl().x, NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(x.get(), old_root.impl().x, NID_key_usage, "critical,keyCertSign,cRLSign");
  AddUris(x.get(), {StrCat(kSpiffe, new_root.MeshId())});
  Sign(x.get(), old_root.impl().x, old_root_key);
  return CertificateFactory::Wrap(x.release());
}

Certificate MakeIssuerCertificate(std::string_view issuer_public_key, std::string_view name,
                                  const Certificate& root, const NodeKey& root_key, WallTime now,
                                  seconds validity) {
  X509Ptr x = NewCertificate(StrCat("hivemesh issuer ", name), issuer_public_key, now, validity);
  AddExtension(x.get(), root.impl().x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  AddExtension(x.get(), root.impl().x, NID_key_usage, "critical,keyCertSign,cRLSign");
  AddUris(x.get(), {StrCat(kSpiffe, root.MeshId())});
  Sign(x.get(), root.impl().x, root_key);
  return CertificateFactory::Wrap(x.release());
}

absl::StatusOr<Certificate> IssueNodeCertificate(const NodeIdentity& who, const Certificate& issuer,
                                                 const NodeKey& issuer_key, WallTime now,
                                                 seconds validity) {
  HM_RETURN_IF_ERROR(CheckNodeIdentity(who.name, who.labels, who.public_key));
  if ((who.role == Role::kClient && !who.client) || (who.client && who.role == Role::kNode)) {
    return absl::InvalidArgumentError(StrCat("role: ", RoleName(who.role), " does not go with ",
                                             who.client ? "a client" : "a node", " certificate"));
  }
  if (!issuer.is_ca() || issuer.MeshId().empty()) {
    return absl::InvalidArgumentError("issuer: not a CA certificate of a mesh");
  }
  if (issuer.public_key() != issuer_key.public_key()) {
    return absl::InvalidArgumentError("issuer: the key is not the certificate's");
  }
  X509Ptr x = NewCertificate(who.name, who.public_key, now, validity);
  AddExtension(x.get(), issuer.impl().x, NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(x.get(), issuer.impl().x, NID_key_usage, "critical,digitalSignature");
  AddExtension(x.get(), issuer.impl().x, NID_ext_key_usage, "serverAuth,clientAuth");
  NodeIdentity named = who;
  named.mesh_id = issuer.MeshId();
  std::vector<std::string> uris = {named.SpiffeId(), StrCat(kRoleUri, RoleName(who.role))};
  for (const auto& [k, v] : who.labels) uris.push_back(StrCat(kLabelUri, k, "=", v));
  AddUris(x.get(), uris);
  Sign(x.get(), issuer.impl().x, issuer_key);
  return CertificateFactory::Wrap(x.release());
}

// ---------------------------------------------------------------------------------------------
// Verifying

absl::StatusOr<NodeIdentity> VerifyNodeCertificate(const Certificate& leaf,
                                                   const std::vector<Certificate>& intermediates,
                                                   const std::vector<Certificate>& roots,
                                                   WallTime now, bool allow_expired) {
  HM_ASSIGN_OR_RETURN(NodeIdentity id, leaf.Identity());
  StorePtr store(X509_STORE_new());
  for (const Certificate& r : roots) {
    if (X509_STORE_add_cert(store.get(), r.impl().x) != 1) ERR_clear_error();  // a duplicate
  }
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (const Certificate& c : intermediates) {
    // A self-signed certificate anchors nothing it is not trusted for; left in, it could stand
    // where a cross certificate leads to a trusted root.
    if (X509_check_issued(c.impl().x, c.impl().x) != X509_V_OK) sk_X509_push(untrusted, c.impl().x);
  }
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (ctx == nullptr ||
      X509_STORE_CTX_init(ctx.get(), store.get(), leaf.impl().x, untrusted) != 1) {
    sk_X509_free(untrusted);
    Fatal("X509_STORE_CTX_init");
  }
  WallTime at = now;
  if (allow_expired && now >= id.not_after) at = id.not_after - seconds(1);
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()),
                             std::chrono::system_clock::to_time_t(at));
  X509_VERIFY_PARAM_set_purpose(X509_STORE_CTX_get0_param(ctx.get()), X509_PURPOSE_SSL_CLIENT);
  const int ok = X509_verify_cert(ctx.get());
  std::string root_mesh;
  if (ok == 1) {
    STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
    X509* top = sk_X509_value(chain, sk_X509_num(chain) - 1);
    X509_up_ref(top);
    root_mesh = CertificateFactory::Wrap(top).MeshId();
  }
  const int err = X509_STORE_CTX_get_error(ctx.get());
  sk_X509_free(untrusted);
  ERR_clear_error();
  if (ok != 1) {
    return absl::PermissionDeniedError(
        StrCat("certificate of ", id.name, " refused: ", X509_verify_cert_error_string(err)));
  }
  if (root_mesh != id.mesh_id) {
    return absl::PermissionDeniedError(StrCat("certificate of ", id.name, " names mesh ",
                                              id.mesh_id, ", its root is of mesh ", root_mesh));
  }
  return id;
}

std::string IssuerName(const Certificate& issuer) {
  constexpr std::string_view kPrefix = "hivemesh issuer ";
  const std::string cn = issuer.CommonName();
  return cn.starts_with(kPrefix) ? cn.substr(kPrefix.size()) : "";
}

absl::Status VerifyIssuerCertificate(const Certificate& issuer,
                                     const std::vector<Certificate>& roots, WallTime now) {
  const std::string name = IssuerName(issuer);
  const auto refused = [&](std::string_view why) {
    return absl::PermissionDeniedError(
        StrCat("issuer certificate '", issuer.CommonName(), "' refused: ", why));
  };
  if (name.empty() || !issuer.is_ca()) return refused("it is not an issuer CA of a mesh");
  if (now < issuer.not_before() || now >= issuer.not_after()) {
    return refused("it is not valid now");
  }
  const std::string digest = issuer.Digest();
  for (const Certificate& root : roots) {
    if (root.Digest() == digest) return refused("it is a root");
  }
  for (const Certificate& root : roots) {
    // A root is self-signed; a cross certificate in the bundle is not, and signs no issuer.
    if (!root.SignedBy(root) || !issuer.SignedBy(root)) continue;
    if (issuer.MeshId() != root.MeshId()) return refused("it names another mesh than its root");
    return absl::OkStatus();
  }
  return refused("no root of this mesh signed it");
}

// ---------------------------------------------------------------------------------------------
// Join tokens

JoinToken JoinToken::Generate(std::string_view ca_digest) {
  return JoinToken{std::string(ca_digest), RandomHex(4), RandomHex(16)};
}

std::string JoinToken::ToString() const { return StrCat("HM1-", ca_digest, "-", id, ".", secret); }

absl::StatusOr<JoinToken> JoinToken::Parse(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("join token: ", why, " (expected HM1-<64 hex>-<8 hex>.<32 hex>)"));
  };
  if (!text.starts_with("HM1-")) return bad("does not start with HM1-");
  text.remove_prefix(4);
  const size_t dash = text.find('-');
  const size_t dot = text.find('.');
  if (dash == std::string_view::npos || dot == std::string_view::npos || dot < dash) {
    return bad("is not of three parts");
  }
  JoinToken t{std::string(text.substr(0, dash)), std::string(text.substr(dash + 1, dot - dash - 1)),
              std::string(text.substr(dot + 1))};
  for (auto [part, size, name] :
       {std::tuple{&t.ca_digest, 64u, "the CA digest"}, std::tuple{&t.id, 8u, "the id"},
        std::tuple{&t.secret, 32u, "the secret"}}) {
    if (part->size() != size || !HexDecode(*part)) {
      return bad(StrCat(name, " is not ", size, " hex digits"));
    }
    for (char& c : *part) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return t;
}

}  // namespace hivemesh::identity
