// Manifests (services/manifest.h): the seed's Service and a Deployment subset, errors naming the
// field, warnings for what hivemesh does not use, and hostile input bounded.
#include "services/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "base/strings.h"

namespace hivemesh::services {
namespace {

using ::testing::HasSubstr;

// The examples the docs walk through (examples/services/).
std::string Example(const std::string& name) {
  std::ifstream in(std::string(HIVEMESH_SOURCE_DIR) + "/examples/services/" + name);
  EXPECT_TRUE(in) << name;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The seed's Service, and a Deployment with all the fields hivemesh reads.
const std::string kSeedService = Example("edge-camera-ai.yaml");
const std::string kDeployment =
    Example("object-detection.yaml") + R"(        args: ["--bind", "127.0.0.1"]
        env:
        - name: MODEL
          value: yolo
        readinessProbe:
          httpGet:
            path: /healthz
            port: 5000
          periodSeconds: 1
          failureThreshold: 2
)";

std::string Refusal(std::string_view yaml) {
  absl::StatusOr<Parsed> p = ParseManifests(yaml);
  return p.ok() ? std::string("accepted") : std::string(p.status().message());
}

std::string Replace(std::string_view text, std::string_view from, std::string_view to) {
  std::string out(text);
  const size_t at = out.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  out.replace(at, from.size(), to);
  return out;
}

TEST(ManifestTest, TheSeedsServiceIsAcceptedUnchanged) {
  absl::StatusOr<Parsed> p = ParseManifests(kSeedService);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->manifests.size(), 1u);
  const Manifest& m = p->manifests[0];
  EXPECT_EQ(m.kind, Kind::kService);
  EXPECT_EQ(m.name, "edge-camera-ai");
  EXPECT_EQ(m.service.selector, (Labels{{"app", "object-detection"}}));
  ASSERT_EQ(m.service.ports.size(), 1u);
  EXPECT_EQ(m.service.ports[0].port, 80);
  EXPECT_EQ(m.service.ports[0].target_port, "5000");
  EXPECT_TRUE(p->warnings.empty());
  // The canonical text parses back to the same object.
  absl::StatusOr<Parsed> again = ParseManifests(m.text);
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << m.text;
  EXPECT_EQ(again->manifests[0].text, m.text);
}

TEST(ManifestTest, AppProtocolSaysWhetherAPortIsRelayedWhole) {
  absl::StatusOr<Parsed> p = ParseManifests(R"(apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  selector: {app: db}
  ports:
  - {port: 5432, appProtocol: tcp}
  - {port: 80, appProtocol: HTTP}
  - {port: 81}
  - {port: 50051, appProtocol: kubernetes.io/h2c}
)");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->warnings.empty());
  const std::vector<ServicePort>& ports = p->manifests[0].service.ports;
  ASSERT_EQ(ports.size(), 4u);
  EXPECT_EQ(ports[0].app_protocol, "tcp");
  EXPECT_TRUE(ports[0].ConnectionLevel());
  EXPECT_FALSE(ports[1].ConnectionLevel());
  EXPECT_FALSE(ports[2].ConnectionLevel());
  EXPECT_TRUE(ports[3].ConnectionLevel());
  // The data policy is checked at apply.
  absl::StatusOr<Parsed> bad = ParseManifests(
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  annotations:\n"
      "    hivemesh.io/data-policy: nowhere\nspec:\n  selector: {app: db}\n  ports:\n"
      "  - {port: 1}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(
      MessageOf(bad.status()).find("hivemesh.io/data-policy: must be local-only, zone or mesh"),
      std::string::npos)
      << bad.status();
  EXPECT_FALSE(ParseManifests("apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n"
                              "  selector: {app: db}\n  ports:\n  - {port: 1, appProtocol: [x]}\n")
                   .ok());
}

TEST(ManifestTest, ADeploymentAndAServiceInOneFile) {
  absl::StatusOr<Parsed> p =
      ParseManifests(std::string(kSeedService) + "---\n" + std::string(kDeployment));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->manifests.size(), 2u);
  const Manifest& d = p->manifests[1];
  EXPECT_EQ(d.kind, Kind::kDeployment);
  EXPECT_EQ(d.name, "object-detection");
  EXPECT_EQ(d.annotations.at("hivemesh.io/node-selector"), "zone=line-1");
  const WorkloadSpec& w = d.workload;
  EXPECT_EQ(w.replicas, 1);
  EXPECT_EQ(w.template_labels.at("app"), "object-detection");
  EXPECT_EQ(w.command, (std::vector<std::string>{"python3", "-m", "http.server", "--bind",
                                                 "127.0.0.1", "5000"}));
  EXPECT_EQ(w.args, (std::vector<std::string>{"--bind", "127.0.0.1"}));
  ASSERT_EQ(w.env.size(), 1u);
  EXPECT_EQ(w.env[0], (std::pair<std::string, std::string>{"MODEL", "yolo"}));
  ASSERT_EQ(w.ports.size(), 1u);
  EXPECT_EQ(w.ports[0].container_port, 5000);
  EXPECT_EQ(w.ports[0].name, "");
  ASSERT_TRUE(w.readiness.has_value());
  EXPECT_EQ(w.readiness->path, "/healthz");
  EXPECT_EQ(w.readiness->port, "5000");
  EXPECT_EQ(w.readiness->period_seconds, 1);
  EXPECT_EQ(w.readiness->failure_threshold, 2);
  EXPECT_EQ(ParseKind("svc"), Kind::kService);
  EXPECT_EQ(ParseKind("workloads"), Kind::kDeployment);
  EXPECT_EQ(ParseKind("pods"), std::nullopt);
}

TEST(ManifestTest, UnknownFieldsAreWarnedAboutNotRefused) {
  const std::string yaml =
      Replace(kSeedService, "spec:\n", "status: {}\nspec:\n  sessionAffinity: None\n") +
      "  externalTrafficPolicy: Local\n";
  absl::StatusOr<Parsed> p = ParseManifests(yaml);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->warnings.size(), 2u);
  EXPECT_THAT(p->warnings[0],
              HasSubstr("Service edge-camera-ai: spec.sessionAffinity is not used"));
  EXPECT_THAT(p->warnings[1], HasSubstr("spec.externalTrafficPolicy"));
}

TEST(ManifestTest, InvalidManifestsAreRefusedNamingTheField) {
  EXPECT_THAT(Refusal("a: [1, 2"), HasSubstr("not YAML"));
  EXPECT_THAT(Refusal(""), HasSubstr("holds no object"));
  EXPECT_THAT(Refusal("- 1\n- 2\n"), HasSubstr("document 1: (top): must be a map"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "kind: Service", "kind: Pod")),
              HasSubstr("'Pod' is not a kind hivemesh runs"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "apiVersion: v1", "apiVersion: apps/v1")),
              HasSubstr("apiVersion"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "edge-camera-ai", "Edge_Camera")),
              HasSubstr("metadata.name: 'Edge_Camera' must be 1 to 63 of [a-z0-9-]"));
  // Clients call the node itself so: a Service of that name would take their requests.
  EXPECT_THAT(Refusal(Replace(kSeedService, "name: edge-camera-ai", "name: localhost")),
              HasSubstr("metadata.name: 'localhost' is how clients reach the node itself"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "port: 80", "port: 70000")),
              HasSubstr("Service edge-camera-ai: spec.ports[0].port: must be 1 to 65535"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "protocol: TCP", "protocol: UDP")),
              HasSubstr("spec.ports[0].protocol: hivemesh carries TCP only"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "    app: object-detection\n", "")),
              HasSubstr("spec.selector"));
  EXPECT_THAT(Refusal(Replace(kSeedService, "targetPort: 5000", "targetPort: [1]")),
              HasSubstr("spec.ports[0].targetPort: must be a string"));
  EXPECT_THAT(Refusal(Replace(kDeployment, "replicas: 1", "replicas: -1")),
              HasSubstr("Deployment object-detection: spec.replicas: must be 0 to 100"));
  EXPECT_THAT(Refusal(Replace(kDeployment, "        app: object-detection\n    spec:",
                              "        app: other\n    spec:")),
              HasSubstr("app=object-detection is not among spec.template.metadata.labels"));
  EXPECT_THAT(
      Refusal(Replace(kDeployment,
                      R"(command: ["python3", "-m", "http.server", "--bind", "127.0.0.1", "5000"])",
                      "x: 1")),
      HasSubstr("needs an image (run through podman) or a command"));
  EXPECT_THAT(Refusal(Replace(kDeployment, "- name: MODEL", "- name: 1MODEL")),
              HasSubstr("env[0].name: must be a variable name"));
  EXPECT_THAT(Refusal(Replace(kDeployment, "path: /healthz", "path: healthz")),
              HasSubstr("readinessProbe.httpGet.path: must start with '/'"));
  EXPECT_THAT(Refusal(Replace(kDeployment, "httpGet:", "tcpSocket:")),
              HasSubstr("hivemesh probes by httpGet only"));
  EXPECT_THAT(Refusal(std::string(kSeedService) + "---\n" + std::string(kSeedService)),
              HasSubstr("Service edge-camera-ai is in the manifest twice"));
  EXPECT_THAT(Refusal(Replace(kDeployment, "      - name: detector\n",
                              "      - name: a\n        image: x\n      - name: detector\n")),
              HasSubstr("one container per workload"));
}

TEST(ManifestTest, HostileInputIsBounded) {
  // Too large, too deep (flow and block), too many documents: refused before or while parsing.
  EXPECT_THAT(Refusal(std::string(kMaxManifestBytes + 1, ' ')), HasSubstr("at most"));
  EXPECT_THAT(Refusal(std::string(100000, '[')), HasSubstr("levels deep"));
  std::string block;
  for (int i = 0; i < 40; ++i) block += std::string(2 * i, ' ') + "a" + std::to_string(i) + ":\n";
  EXPECT_THAT(Refusal(block), HasSubstr("levels deep"));
  std::string dashes;  // "- - - ... x": sequences nested on one line
  for (int i = 0; i < 500; ++i) dashes += "- ";
  EXPECT_THAT(Refusal(dashes + "x"), HasSubstr("levels deep"));
  std::string many;
  for (size_t i = 0; i <= kMaxDocuments; ++i) {
    many += Replace(kSeedService, "edge-camera-ai", "svc-" + std::to_string(i)) + "---\n";
  }
  EXPECT_THAT(Refusal(many), HasSubstr("more than 64 documents"));
  // Aliases: a billion laughs stays a small graph to the parser; the lists hivemesh reads are
  // bounded.
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    laughs += std::string(1, c) + ": &" + c + " [*" + static_cast<char>(c - 1) + ", *" +
              static_cast<char>(c - 1) + ", *" + static_cast<char>(c - 1) + "]\n";
  }
  EXPECT_THAT(Refusal(laughs), HasSubstr("kind: is required"));
  std::string env =
      Replace(kDeployment, "        env:\n        - name: MODEL\n          value: yolo\n",
              "        env: &e [{name: A}, {name: B}]\n");
  EXPECT_EQ(Refusal(env), "accepted");
  std::string long_list = "[";
  for (int i = 0; i < 300; ++i) long_list += "x,";
  long_list += "x]";
  EXPECT_THAT(Refusal(Replace(kDeployment, R"(["--bind", "127.0.0.1"])", long_list)),
              HasSubstr("more than 256"));
  // Binary junk is an error, not a crash.
  EXPECT_NE(Refusal(std::string("\x00\xff\xfe\x01kind: Service", 17)), "accepted");
  EXPECT_NE(Refusal("kind: !!binary AAAA\n"), "accepted");
}

}  // namespace
}  // namespace hivemesh::services
