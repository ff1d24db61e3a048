#!/usr/bin/env node
/*
 * A local Sigstore instance for Sealgate's tests: Fulcio (CA + CT log), Rekor v1 and an
 * RFC 3161 timestamp authority from npm @sigstore/mock, served by node:http on 127.0.0.1.
 *
 * Usage: node server.js [--port N] [--out DIR] [--oidc-key PEMFILE] [--ca-clock-skew SECONDS]
 *
 *   --port N            listen on N (default 0: the OS picks a free port)
 *   --out DIR           write trusted_root.json, signing_config.json and trust_config.json
 *                       (a sigstore ClientTrustConfig) into DIR
 *   --oidc-key PEMFILE  public key (SPKI PEM) that must have signed every OIDC identity token;
 *                       tokens are also required to carry aud "sigstore" and to be unexpired.
 *                       Without it tokens are only decoded, as @sigstore/mock does.
 *   --ca-clock-skew S   issue certificates as if the CA's clock were S seconds ahead (or
 *                       behind, if negative): with S = 3600 a certificate (valid ten minutes)
 *                       is not yet valid when Rekor and the TSA see the signature
 *
 * Once listening it prints one JSON line on stdout:
 *   {"port":N,"url":"http://127.0.0.1:N","trustedRoot":{...},"signingConfig":{...}}
 *
 * @sigstore/mock speaks to sigstore-js; four requests from sigstore-python 4.5.1 differ and
 * are adapted here:
 *   1. Fulcio: the token comes in the Authorization header (not credentials.oidcIdentityToken)
 *      and certificateSigningRequest is base64(PEM) rather than PEM.
 *   2. TSA: the request is a DER TimeStampReq (RFC 3161), not the JSON sigstore-js sends.
 *   3. Rekor v1 DSSE: sigstore-python proposes a dsse/0.0.1 entry with proposedContent; real
 *      Rekor stores envelopeHash, payloadHash and signatures instead, and sigstore-python checks
 *      exactly that body, so the proposal is rewritten (after verifying its signature, as Rekor does).
 *   4. Rekor v2 is not served: @sigstore/mock's v2 entries do not verify with sigstore-python.
 * And one for the independent verifier: the TSA's genTime is kept to whole seconds, since
 * DER drops trailing zeros of fractional seconds (".12Z") and @sigstore/core (npm) accepts
 * only exactly three digits, which failed one bundle in ten.
 */
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

require('reflect-metadata'); // @peculiar/x509 needs the polyfill loaded first
const asn1js = require('asn1js');
const jose = require('jose');
const x509 = require('@peculiar/x509');
const mock = require('@sigstore/mock');

const FULCIO_PATH = '/api/v2/signingCert';
const REKOR_PATH = '/api/v1/log/entries';
const TSA_PATH = '/api/v1/timestamp';
const MAX_BODY_BYTES = 1024 * 1024;
const OPERATOR = 'sigstore.mock';

function parseArgs(argv) {
  const args = { port: 0, out: null, oidcKey: null, caClockSkew: 0 };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    i += 1;
    if (flag === '--port') args.port = Number.parseInt(value, 10);
    else if (flag === '--out') args.out = value;
    else if (flag === '--oidc-key') args.oidcKey = value;
    else if (flag === '--ca-clock-skew') args.caClockSkew = Number.parseInt(value, 10);
    else throw new Error(`unknown option ${flag}`);
  }
  return args;
}

const newKeyPair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const spki = (keyObject) => keyObject.export({ format: 'der', type: 'spki' });
const b64 = (bytes) => Buffer.from(bytes).toString('base64');
const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest();

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// (1) Fulcio: move the bearer token and the base64(PEM) CSR to where @sigstore/mock reads them.
async function adaptFulcioRequest(body, headers, oidcKey) {
  const request = JSON.parse(body.toString('utf8'));
  let token = request.credentials && request.credentials.oidcIdentityToken;
  const auth = headers.authorization || '';
  if (!token && auth.startsWith('Bearer ')) token = auth.slice('Bearer '.length).trim();
  if (!token) throw new HttpError(401, 'no OIDC identity token');
  if (oidcKey) {
    try {
      await jose.jwtVerify(token, oidcKey, { audience: 'sigstore', requiredClaims: ['iss', 'sub', 'exp'] });
    } catch (e) {
      throw new HttpError(401, `OIDC identity token refused: ${e.message}`);
    }
  }
  let csr = request.certificateSigningRequest;
  if (typeof csr !== 'string') throw new HttpError(400, 'certificateSigningRequest missing');
  if (!csr.includes('-----BEGIN')) csr = Buffer.from(csr, 'base64').toString('utf8');
  // Real Fulcio checks proof of possession of the key in the CSR; so do we.
  const parsed = new x509.Pkcs10CertificateRequest(csr);
  if (!(await parsed.verify())) throw new HttpError(400, 'CSR signature does not verify');
  return Buffer.from(JSON.stringify({ credentials: { oidcIdentityToken: token }, certificateSigningRequest: csr }));
}

function dssePae(payloadType, payload) {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${type.length} `, 'utf8'), type,
    Buffer.from(` ${payload.length} `, 'utf8'), payload,
  ]);
}

// (3) Rekor v1: turn a proposed dsse/0.0.1 entry into the body real Rekor would store.
function adaptRekorRequest(body) {
  const proposal = JSON.parse(body.toString('utf8'));
  if (proposal.kind !== 'dsse') return body;
  const content = proposal.spec && proposal.spec.proposedContent;
  if (!content || typeof content.envelope !== 'string' || !Array.isArray(content.verifiers)) {
    throw new HttpError(400, 'dsse entry without proposedContent.envelope/verifiers');
  }
  const envelope = JSON.parse(content.envelope);
  const payload = Buffer.from(envelope.payload, 'base64');
  const pae = dssePae(envelope.payloadType, payload);
  const signatures = envelope.signatures.map((signature) => {
    const verifier = content.verifiers.find((candidate) => {
      const cert = new crypto.X509Certificate(Buffer.from(candidate, 'base64'));
      return crypto.verify('sha256', pae, cert.publicKey, Buffer.from(signature.sig, 'base64'));
    });
    if (!verifier) throw new HttpError(400, 'DSSE signature does not verify with any verifier');
    return { signature: signature.sig, verifier };
  });
  const entry = {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(Buffer.from(content.envelope, 'utf8')).toString('hex') },
      payloadHash: { algorithm: 'sha256', value: sha256(payload).toString('hex') },
      signatures,
    },
  };
  return Buffer.from(JSON.stringify(entry));
}

// (2) TSA: read the DER TimeStampReq (RFC 3161 section 2.4.1).
function parseTimeStampReq(der) {
  const parsed = asn1js.fromBER(new Uint8Array(der).buffer);
  if (parsed.offset === -1) throw new HttpError(400, 'TimeStampReq is not DER');
  const fields = parsed.result.valueBlock.value;
  const imprint = fields[1].valueBlock.value;
  const request = {
    hashAlgorithmOID: imprint[0].valueBlock.value[0].valueBlock.toString(),
    artifactHash: Buffer.from(imprint[1].valueBlock.valueHexView),
    policyOID: '1.3.6.1.4.1.57264.2',
    nonce: null,
    certReq: false,
  };
  for (const field of fields.slice(2)) {
    if (field instanceof asn1js.ObjectIdentifier) request.policyOID = field.valueBlock.toString();
    else if (field instanceof asn1js.Integer) request.nonce = Buffer.from(field.valueBlock.valueHexView);
    else if (field instanceof asn1js.Boolean) request.certReq = field.valueBlock.value;
  }
  return request;
}

async function startInstance(args) {
  const caClock = args.caClockSkew ? new Date(Date.now() + args.caClockSkew * 1000) : undefined;
  const oidcKey = args.oidcKey ? crypto.createPublicKey(fs.readFileSync(args.oidcKey)) : null;

  const server = http.createServer();
  await new Promise((resolve) => server.listen(args.port, '127.0.0.1', resolve));
  const { port } = server.address();
  const url = `http://127.0.0.1:${port}`;

  const caKeys = newKeyPair();
  const ctKeys = newKeyPair();
  const tlogKeys = newKeyPair();
  const tsaKeys = newKeyPair();
  const ctlog = await mock.initializeCTLog(ctKeys, caClock);
  const ca = await mock.initializeCA(caKeys, ctlog, caClock);
  const tlog = await mock.initializeTLog(url, tlogKeys);
  const tsa = await mock.initializeTSA(tsaKeys);
  // @sigstore/mock encodes the nonce as a JS number; echo the request's 64-bit nonce exactly.
  tsa.getCurrentTime = () => new Date(Math.floor(Date.now() / 1000) * 1000);
  const tstInfo = tsa.tstInfo.bind(tsa);
  tsa.tstInfo = (req) => {
    const info = tstInfo({ ...req, nonce: 0 });
    if (req.nonce) info.nonce = new asn1js.Integer({ valueHex: new Uint8Array(req.nonce).buffer });
    else delete info.nonce;
    return info;
  };

  const fulcio = mock.fulcioHandler(ca);
  const rekor = mock.rekorHandler(tlog);
  const timestamp = mock.tsaHandler(tsa);

  // Mock-generated roots start "now"; the trust material starts a little earlier so a
  // skewed CA clock, and clocks a second apart, still fall inside it.
  const earliest = Math.min(Date.now(), caClock ? caClock.getTime() : Date.now());
  const start = new Date(earliest - 10 * 60 * 1000).toISOString();
  const ctKey = spki(ctKeys.publicKey);
  const tlogKey = spki(tlogKeys.publicKey);
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{
      baseUrl: url,
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: b64(tlogKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
      logId: { keyId: b64(sha256(tlogKey)) },
    }],
    certificateAuthorities: [{
      subject: { organization: OPERATOR, commonName: 'sigstore' },
      uri: url,
      certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
      validFor: { start },
    }],
    ctlogs: [{
      baseUrl: url,
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: b64(ctKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
      logId: { keyId: b64(sha256(ctKey)) },
    }],
    timestampAuthorities: [{
      subject: { organization: OPERATOR, commonName: 'tsa' },
      uri: `${url}${TSA_PATH}`,
      certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }] },
      validFor: { start },
    }],
  };
  const service = (serviceUrl) => ({ url: serviceUrl, majorApiVersion: 1, validFor: { start }, operator: OPERATOR });
  const signingConfig = {
    mediaType: 'application/vnd.dev.sigstore.signingconfig.v0.2+json',
    caUrls: [service(url)],
    oidcUrls: [],
    rekorTlogUrls: [service(url)],
    tsaUrls: [service(`${url}${TSA_PATH}`)],
    rekorTlogConfig: { selector: 'ANY' },
    tsaConfig: { selector: 'ANY' },
  };

  const routes = {
    [FULCIO_PATH]: async (body, headers) => fulcio.fn(await adaptFulcioRequest(body, headers, oidcKey)),
    [REKOR_PATH]: async (body) => rekor.fn(adaptRekorRequest(body)),
    [TSA_PATH]: async (body) => {
      const request = parseTimeStampReq(body);
      return { statusCode: 201, response: await tsa.timestamp(request), contentType: 'application/timestamp-reply' };
    },
  };
  void timestamp; // the JSON TSA handler is replaced by the DER one above

  server.on('request', (req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) req.destroy();
      else chunks.push(chunk);
    });
    req.on('end', async () => {
      const reply = (status, body, type) => {
        res.writeHead(status, { 'Content-Type': type || 'text/plain' });
        res.end(body);
      };
      if (req.method === 'GET' && req.url === '/healthz') return reply(200, 'ok');
      const route = req.method === 'POST' ? routes[req.url.split('?')[0]] : undefined;
      if (!route) return reply(404, `no route ${req.method} ${req.url}`);
      try {
        const out = await route(Buffer.concat(chunks), req.headers);
        return reply(out.statusCode, out.response, out.contentType);
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 400;
        return reply(status, JSON.stringify({ code: status, message: e.message }), 'application/json');
      }
    });
  });

  if (args.out) {
    fs.mkdirSync(args.out, { recursive: true });
    const write = (name, value) => fs.writeFileSync(path.join(args.out, name), JSON.stringify(value, null, 2));
    write('trusted_root.json', trustedRoot);
    write('signing_config.json', signingConfig);
    write('trust_config.json', {
      mediaType: 'application/vnd.dev.sigstore.clienttrustconfig.v0.1+json',
      trustedRoot,
      signingConfig,
    });
  }
  process.stdout.write(`${JSON.stringify({ port, url, trustedRoot, signingConfig })}\n`);
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

startInstance(parseArgs(process.argv.slice(2))).catch((e) => {
  process.stderr.write(`sigstore_local: ${e.stack || e}\n`);
  process.exit(1);
});
