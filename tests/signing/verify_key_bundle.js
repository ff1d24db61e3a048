// Independent check of a key-signed Sigstore bundle with npm @sigstore/verify (not Sealgate code).
// Usage: node verify_key_bundle.js BUNDLE.json PUBLIC_KEY.pem
// Exit 0 and print {"ok":true,...} when the bundle verifies against the key; exit 1 otherwise.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [bundlePath, keyPath] = process.argv.slice(2);
try {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const publicKey = crypto.createPublicKey(fs.readFileSync(keyPath, 'utf8'));
  // No Fulcio, Rekor, CT log or TSA: key signatures from Sealgate carry no log entry.
  const root = TrustedRoot.fromJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [],
  });
  const seenHints = [];
  const keys = (hint) => {
    seenHints.push(hint);
    return { publicKey, validFor: () => true };
  };
  const verifier = new Verifier(toTrustMaterial(root, keys), {
    tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0,
  });
  verifier.verify(toSignedEntity(bundle));
  process.stdout.write(JSON.stringify({ ok: true, hints: seenHints }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.message || e) }) + '\n');
  process.exit(1);
}
