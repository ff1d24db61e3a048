#!/usr/bin/env node
/*
 * An independent Sigstore bundle verifier for Sealgate's tests, on npm @sigstore/verify
 * (sigstore-js), which shares no code with sigstore-python or Sealgate.
 *
 * Usage:
 *   node verify.js --bundle FILE --trusted-root FILE [--artifact FILE]
 *       (--certificate-identity SAN | --certificate-identity-regexp RE)
 *       [--certificate-oidc-issuer ISSUER]
 *   node verify.js --bundle FILE --trusted-root FILE [--artifact FILE] --key PEMFILE
 *   optional: --tlog-threshold N --timestamp-threshold N --ctlog-threshold N
 *
 * --artifact is needed for message-signature bundles; DSSE bundles carry their payload.
 * With --key the bundle's publicKey hint is ignored: the given key is the only candidate.
 * Thresholds default to 1 for keyless and 0 for --key.
 *
 * Prints one JSON line and exits 0 when the bundle verifies:
 *   {"ok":true,"subjectAlternativeName":...,"issuer":...,"payloadType":...}
 * otherwise exits 1 with {"ok":false,"code":...,"message":...}.
 */
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');

const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    if (!flag.startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${flag}`);
    args[flag.slice(2)] = argv[i + 1];
  }
  for (const required of ['bundle', 'trusted-root']) {
    if (!args[required]) throw new Error(`--${required} is required`);
  }
  const keyless = args['certificate-identity'] || args['certificate-identity-regexp'];
  if (!args.key === !keyless) {
    throw new Error('give exactly one of --key or --certificate-identity[-regexp]');
  }
  return args;
}

function verify(args) {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(args.bundle, 'utf8')));
  const root = TrustedRoot.fromJSON(JSON.parse(fs.readFileSync(args['trusted-root'], 'utf8')));
  const artifact = args.artifact ? fs.readFileSync(args.artifact) : undefined;

  let keys;
  if (args.key) {
    const publicKey = crypto.createPublicKey(fs.readFileSync(args.key));
    keys = () => ({ publicKey, validFor: () => true });
  }
  const threshold = (name) => {
    const value = args[`${name}-threshold`];
    if (value !== undefined) return Number.parseInt(value, 10);
    return args.key ? 0 : 1;
  };
  const verifier = new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: threshold('tlog'),
    ctlogThreshold: threshold('ctlog'),
    timestampThreshold: threshold('timestamp'),
  });

  let policy;
  if (!args.key) {
    policy = {
      subjectAlternativeName: args['certificate-identity'] || new RegExp(args['certificate-identity-regexp']),
    };
    if (args['certificate-oidc-issuer']) policy.extensions = { issuer: args['certificate-oidc-issuer'] };
  }
  const signer = verifier.verify(toSignedEntity(bundle, artifact), policy);
  const identity = signer.identity || {};
  return {
    ok: true,
    subjectAlternativeName: identity.subjectAlternativeName || null,
    issuer: (identity.extensions && identity.extensions.issuer) || null,
    payloadType: bundle.content.$case === 'dsseEnvelope' ? bundle.content.dsseEnvelope.payloadType : null,
  };
}

try {
  process.stdout.write(`${JSON.stringify(verify(parseArgs(process.argv.slice(2))))}\n`);
} catch (e) {
  process.stdout.write(`${JSON.stringify({ ok: false, code: e.code || e.name, message: e.message })}\n`);
  process.exit(1);
}
