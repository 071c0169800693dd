//! Help texts.

use crate::args::HelpTopic;

const MAIN: &str = "\
consentctl: check and explain what the consent filter does, with the filter's own engine
(consent-core), outside Envoy.

usage:
  consentctl validate config FILE              a plugin configuration (JSON; `-` for stdin)
  consentctl validate envoy FILE.yaml          every plugin configuration in an Envoy YAML file
  consentctl validate policy FILE              a policy document
  consentctl validate snapshot FILE [--config CFG]
                                               a consent snapshot as the source serves it
  consentctl explain --config CFG --purpose P [--user U] [options]
                                               decide one request as the filter would, and why
  consentctl policy [--config CFG | --policy FILE] [--lang ja|en|both]
                                               the policy as tables
  consentctl help COMMAND | COMMAND --help     more about one command
  consentctl --version

CFG is a plugin configuration in JSON, or an Envoy YAML file (.yaml/.yml) holding one.
Nothing printed holds a user ID or a personal-data value.

exit codes: 0 success (explain: allow or redact), 1 invalid input or bad arguments,
            2 explain: the filter would block the request
";

const VALIDATE: &str = "\
usage:
  consentctl validate config FILE
  consentctl validate envoy FILE.yaml
  consentctl validate policy FILE
  consentctl validate snapshot FILE [--config CFG]

config    compiles a plugin configuration with consent_core::compile_config (what the
          filter's on_configure does) and prints a summary; an error prints the one line
          the filter would log, naming the field.
envoy     finds every `configuration:` whose \"@type\" is google.protobuf.StringValue and
          whose `value: |` holds the plugin configuration, and checks each, with its line;
          a YAML alias (*name) of an anchored configuration is reported as reusing it.
policy    compiles a policy document (CompiledPolicy::from_json).
snapshot  parses a full snapshot (FullSnapshotDoc) and compiles it as the fetcher does
          (KeyedSnapshot::compile) against CFG's policy and subject keying (default: the
          shipped policy, plain subjects); ids the policy does not know are warnings (the
          live path skips them). Prints counts only, never a subject.

FILE `-` reads stdin. Exit code 0 valid, 1 invalid or unreadable.
";

const EXPLAIN: &str = "\
usage:
  consentctl explain --config CFG --purpose P [--user U] [--snapshot FILE]
                     [--uri-san S | --dns-san S | --cluster C] [--dev-header-value V]
                     [--route-name R] [--host H] [--path PATH] [--gpc]
                     [--body FILE [--json-out]] [--json]

Decides one request exactly as the filter would: the purpose and user headers named by
the configuration, `sec-gpc: 1` with --gpc, the caller from the peer certificate SANs or
the destination cluster (as `caller.from` says), the route rule from route name, host and
path; then the inline consents, or with --snapshot the record in that snapshot (as
served by the consent source, compiled as the fetcher does).

  --user U              value of the user-ID header (absent: not sent)
  --snapshot FILE       consent snapshot to look the user up in (instead of inline consents)
  --uri-san S           peer certificate URI SAN, e.g. spiffe://ads.example/x
  --dns-san S           peer certificate DNS SAN
  --cluster C           destination cluster (egress, caller.from: upstream_cluster)
  --dev-header-value V  value of the configuration's caller.dev_header
  --route-name R        Envoy route name (xds.route_name)
  --host H, --path PATH :authority and :path
  --gpc                 send Sec-GPC: 1
  --body FILE           a JSON body: redact it for this decision and list the field paths
                        acted on (multi-subject elements decided for their own person)
  --json-out            also print the redacted body
  --json                print the explanation as JSON (consent_core::explain)

The output names the outcome, reason, purpose (basis, clause), party and how it was
identified, rule, GPC, consent versions, rights, and each removed category with its
reason. It never holds the user ID.

A route rule in dry-run mode (`dry_run`) is shown as `mode dry_run`: the filter only
records the decision. The exit code still follows the decision.

exit codes: 0 allow or redact, 2 block (including a body the filter would refuse),
            1 invalid input or bad arguments
";

const POLICY: &str = "\
usage:
  consentctl policy [--config CFG | --policy FILE] [--lang ja|en|both]

Prints the policy as tables: purposes (labels, clause, basis, without consent, joint use,
changed in, categories, transforms), categories (labels, explicit grant, headers, query
parameters, JSON selectors, coarsening), parties (labels, kind, identities; a
configuration's caller.identities replace the policy's) and the third-party provision
purpose. Default: the shipped policy; labels in both languages.
";

/// The help text of `topic`.
pub fn text(topic: HelpTopic) -> &'static str {
    match topic {
        HelpTopic::Main => MAIN,
        HelpTopic::Validate => VALIDATE,
        HelpTopic::Explain => EXPLAIN,
        HelpTopic::Policy => POLICY,
    }
}
