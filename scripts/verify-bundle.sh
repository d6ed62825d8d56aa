#!/usr/bin/env bash
# Verify a bundle made by `aido export` without aido, with standard tools only:
# tar, jq, openssl (>= 3.0), base64 and sha256sum (README: "Verifying a bundle without aido").
#   scripts/verify-bundle.sh BUNDLE.tar.gz TRUSTED.pub
# TRUSTED.pub is the signer's public key as YOU got it (never the bundle's own signer.pub).
# Exits 0 when the signature and every file check out, non-zero on any failure.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUNDLE TRUSTED.pub" >&2; exit 2; }
[ -f "$1" ] || { echo "no bundle $1" >&2; exit 2; }
[ -f "$2" ] || { echo "no public key $2" >&2; exit 2; }
bundle=$(realpath "$1"); trusted=$(realpath "$2")
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir "$work/b"; cd "$work/b"

# 1. Only regular files, and no name that is absolute or climbs out: checked before extracting.
#    (Listed to files first: a reader that stops early must not hide a bad member.)
tar -tvf "$bundle" > ../members.txt; tar -tf "$bundle" > ../names.txt
if cut -c1 ../members.txt | grep -v -- '[-d]' > /dev/null; then echo "FAIL: a link or special file in the bundle" >&2; exit 1; fi
if grep -qE '(^/|(^|/)\.\.(/|$))' ../names.txt; then echo "FAIL: an unsafe member name" >&2; exit 1; fi
tar -xf "$bundle" --no-same-owner --no-same-permissions

# 2. The signature: Ed25519 over DSSE's PAE of the payload, by the key you trust.
e=attestation.intoto.json
t=$(jq -r .payloadType $e)
[ "$t" = "application/vnd.in-toto+json" ] || { echo "FAIL: payloadType $t" >&2; exit 1; }
jq -r .payload $e | base64 -d > ../payload.json
{ printf 'DSSEv1 %d %s %d ' ${#t} "$t" $(wc -c < ../payload.json); cat ../payload.json; } > ../pae.bin
jq -r '.signatures[0].sig' $e | base64 -d > ../sig.bin
openssl pkeyutl -verify -pubin -inkey "$trusted" -rawin -in ../pae.bin -sigfile ../sig.bin
jq -e '._type == "https://in-toto.io/Statement/v1"
       and .predicateType == "https://aido.dev/attestation/run/v1"' ../payload.json > /dev/null

# 3. Every file the statement names has the sealed SHA-256 (events.log: lines 1..N, the whole
#    file here). Outputs may have been left out (`aido export --no-outputs`), nothing else.
jq -r '.subject[] | select(.name | startswith("outputs/") | not) | "\(.digest.sha256)  \(.name)"' \
  ../payload.json | sha256sum --strict -c -
[ ! -d outputs ] || jq -r '.subject[] | select(.name | startswith("outputs/"))
  | "\(.digest.sha256)  \(.name)"' ../payload.json | sha256sum --strict --ignore-missing -c -

# 4. Nothing in the bundle that the statement does not name.
extra=$(comm -23 <(find . -type f | sed 's|^\./||' | sort) \
  <({ jq -r '.subject[].name' ../payload.json; echo "$e"; echo signer.pub; } | sort))
[ -z "$extra" ] || { echo "FAIL: files the record does not list: $extra" >&2; exit 1; }
jq -r '.predicate | "verified: \(.runId) of sandbox \(.sandboxId): \(.status), exit code \(.exitCode)"' \
  ../payload.json
