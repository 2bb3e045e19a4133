// Writ's approval form: the one script of its pages (no inline scripts: Content-Security-Policy default-src 'self').
//
// Keys stay in this browser. Enrolment makes an Ed25519 key with WebCrypto as non-extractable and keeps the
// CryptoKey in IndexedDB; only the raw public key is sent. To decide, the script fetches the signed plan
// envelope, computes the plan digest from the payload bytes itself (SHA-256), shows the steps from those same
// bytes, refuses to sign when the digest is not the plan id of the page, builds the in-toto approval
// statement exactly as writ.plans.statements does (RFC 8785 canonical JSON), and signs its DSSE PAE.
'use strict';

(() => {
  const enc = new TextEncoder();
  const DB = 'writ';
  const STORE = 'keys';
  const ALG = { name: 'Ed25519' };
  const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
  const APPROVAL_PREDICATE = 'https://writ.dev/approval/v1';
  const IN_TOTO = 'application/vnd.in-toto+json';
  const PLAN_TYPE = 'application/vnd.writ.plan+json';
  const LOGIN_TYPE = 'application/vnd.writ.login+json';
  const ENROL_TYPE = 'application/vnd.writ.enrol+json';

  // --- bytes -------------------------------------------------------------------------------------------

  function b64(bytes) {
    let s = '';
    for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
    return btoa(s);
  }

  function unb64(text) {
    const s = atob(text);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  function hex(bytes) {
    return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function sha256hex(bytes) {
    return hex(await crypto.subtle.digest('SHA-256', bytes));
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  // DSSE v1 Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
  function pae(type, payload) {
    const t = enc.encode(type);
    return concat(enc.encode(`DSSEv1 ${t.length} `), t, enc.encode(` ${payload.length} `), payload);
  }

  // RFC 8785 for what Writ signs here: objects, arrays, strings, safe integers, booleans, null. Keys sort by
  // UTF-16 code units (JavaScript's default sort), strings escape as JSON.stringify does (RFC 8785 adopts it).
  function canonical(value) {
    if (value === null || typeof value === 'boolean') return JSON.stringify(value);
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) throw new Error('only integers within 2^53 are signed here');
      return JSON.stringify(value);
    }
    if (typeof value === 'string') {
      if (!value.isWellFormed()) throw new Error('text with a lone surrogate cannot be signed');
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${canonical(k)}:${canonical(value[k])}`).join(',')}}`;
  }

  function canonicalBytes(value) {
    return enc.encode(canonical(value));
  }

  // The approval statement of writ.plans.statements.ApprovalStatement, field for field.
  function approvalStatement(planId, approver, decision, comment, at) {
    return {
      _type: STATEMENT_TYPE,
      subject: [{ name: 'plan', digest: { sha256: planId.replace(/^sha256:/, '') } }],
      predicateType: APPROVAL_PREDICATE,
      predicate: { decision, approver, comment, at },
    };
  }

  // Whole seconds, as writ.engine.core.timeutil.iso writes a time without microseconds.
  function nowIso() {
    return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  async function signEnvelope(key, payloadType, payload) {
    const sig = await crypto.subtle.sign(ALG, key.privateKey, pae(payloadType, payload));
    return canonical({ payload: b64(payload), payloadType, signatures: [{ keyid: key.keyId, sig: b64(sig) }] });
  }

  // --- keys in IndexedDB -------------------------------------------------------------------------------

  function db() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'principal' });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  async function keys(mode, act) {
    const conn = await db();
    try {
      return await new Promise((resolve, reject) => {
        const tx = conn.transaction(STORE, mode);
        const req = act(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      conn.close();
    }
  }

  const getKey = (principal) => keys('readonly', (s) => s.get(principal));
  const allKeys = () => keys('readonly', (s) => s.getAll());
  const putKey = (record) => keys('readwrite', (s) => s.put(record));
  const deleteKey = (principal) => keys('readwrite', (s) => s.delete(principal));

  // --- talking to Writ ---------------------------------------------------------------------------------

  function csrf() {
    const meta = document.querySelector('meta[name="writ-csrf"]');
    return meta ? meta.content : '';
  }

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const e = answer.error || { code: 'http_' + response.status, message: response.statusText };
      throw new Error(`${response.status} ${e.code}: ${e.message}`);
    }
    return answer;
  }

  function say(el, text, bad) {
    el.textContent = text;
    el.classList.toggle('refusal', Boolean(bad));
  }

  // --- enrolment ---------------------------------------------------------------------------------------

  async function enrol(form, status) {
    const principal = form.dataset.principal;
    const key = await crypto.subtle.generateKey(ALG, false, ['sign', 'verify']);
    const raw = new Uint8Array(await crypto.subtle.exportKey('raw', key.publicKey));
    const publicKey = b64(raw);
    const keyId = 'sha256:' + await sha256hex(raw);
    const statement = canonicalBytes({
      _type: 'https://writ.dev/enrol/v1', invite: form.dataset.invite, origin: location.origin, principal,
      public_key: publicKey,
    });
    const proof = await crypto.subtle.sign(ALG, key.privateKey, pae(ENROL_TYPE, statement));
    const previous = await getKey(principal);
    await putKey({ principal, keyId, publicKey, privateKey: key.privateKey, origin: location.origin,
      enrolledAt: nowIso() });
    try {
      const answer = await postJson(location.pathname, { public_key: publicKey, proof: b64(proof) });
      if (answer.key_id !== keyId) throw new Error(`Writ recorded key ${answer.key_id}, not ${keyId}`);
    } catch (e) {
      if (previous) await putKey(previous); else await deleteKey(principal);
      throw e;
    }
    return keyId;
  }

  async function enrolPage() {
    const form = document.getElementById('enrol-form');
    const status = document.getElementById('enrol-status');
    if (!form) return;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      form.querySelector('button').disabled = true;
      say(status, 'Making your key ...');
      try {
        const keyId = await enrol(form, status);
        status.replaceChildren();
        say(status, `Enrolled: this browser holds the key ${keyId.slice(0, 19)}.. of ${form.dataset.principal}. `);
        const link = document.createElement('a');
        link.href = '/login';
        link.id = 'to-login';
        link.textContent = 'Log in';
        status.append(link);
      } catch (e) {
        say(status, `Not enrolled: ${e.message}`, true);
      }
    });
  }

  // --- login -------------------------------------------------------------------------------------------

  async function login(principal) {
    const key = await getKey(principal);
    if (!key) throw new Error(`this browser holds no key of ${principal}`);
    const challenge = await postJson('/login/challenge', { principal });
    const payload = unb64(challenge.payload);
    const claim = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
    if (claim._type !== 'https://writ.dev/login/v1' || claim.origin !== location.origin || claim.principal !== principal) {
      throw new Error('the challenge is not for this site and approver: not signed');
    }
    const sig = await crypto.subtle.sign(ALG, key.privateKey, pae(LOGIN_TYPE, payload));
    return postJson('/login', { challenge_id: challenge.challenge_id, key_id: key.keyId, signature: b64(sig) });
  }

  async function loginPage() {
    const form = document.getElementById('login-form');
    const status = document.getElementById('login-status');
    const select = document.getElementById('login-principal');
    if (!form) return;
    const found = await allKeys();
    if (!found.length) {
      say(status, 'This browser holds no Writ key: open the invite link your Writ admin gave you.', true);
      return;
    }
    for (const k of found) {
      const option = document.createElement('option');
      option.value = k.principal;
      option.textContent = k.principal;
      select.append(option);
    }
    select.disabled = false;
    form.querySelector('button').disabled = false;
    say(status, `Keys in this browser: ${found.map((k) => k.principal).join(', ')}.`);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      say(status, 'Signing the challenge ...');
      try {
        const answer = await login(select.value);
        location.assign(answer.next);
      } catch (e) {
        say(status, `Not logged in: ${e.message}`, true);
      }
    });
  }

  // --- the plan page: check what is signed, then sign -----------------------------------------------------

  function renderSteps(list, plan) {
    list.replaceChildren();
    plan.steps.forEach((step, i) => {
      const item = document.createElement('li');
      const head = document.createElement('p');
      head.textContent = `Step ${i + 1}: ${step.server} / ${step.tool} (definition ${step.definition_digest})`;
      const args = document.createElement('pre');
      args.textContent = JSON.stringify(step.args, null, 2);
      item.append(head, args);
      for (const c of step.constraints || []) {
        const p = document.createElement('p');
        p.textContent = `constraint on ${c.arg}: ${canonical(c)}`;
        item.append(p);
      }
      list.append(item);
    });
  }

  // The plan as the browser reads it from the envelope: null (and why) unless its digest is this page's plan.
  async function checkedPlan(section) {
    const planId = section.dataset.planId;
    const response = await fetch(section.dataset.envelopeUrl, { credentials: 'same-origin' });
    if (!response.ok) return { problem: `the signed plan could not be fetched (${response.status})` };
    const envelope = await response.json();
    if (envelope.payloadType !== PLAN_TYPE) return { problem: `the envelope holds ${envelope.payloadType}, not a plan` };
    const payload = unb64(envelope.payload);
    const digest = 'sha256:' + await sha256hex(payload);
    if (digest !== planId) {
      return { digest, problem: `the signed plan Writ sent has digest ${digest}, not ${planId}, the plan of this page` };
    }
    const plan = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
    return { digest, plan };
  }

  async function planPage() {
    const section = document.getElementById('signing');
    if (!section) return;
    const status = document.getElementById('sign-status');
    const form = document.getElementById('decision-form');
    const buttons = form.querySelectorAll('button[type="submit"]');
    let checked = { problem: 'not checked yet' };
    let key = null;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!checked.plan || !key) {
        say(status, `Refusing to sign: ${checked.problem || 'no key'}`, true);
        return;
      }
      const decision = event.submitter && event.submitter.value === 'reject' ? 'reject' : 'approve';
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const statement = approvalStatement(checked.digest, section.dataset.approver, decision,
          form.elements.comment.value, nowIso());
        form.elements.envelope.value = await signEnvelope(key, IN_TOTO, canonicalBytes(statement));
        form.elements.decision.value = decision;
        say(status, `Signed your ${decision === 'approve' ? 'approval' : 'rejection'}; sending ...`);
        form.submit();
      } catch (e) {
        say(status, `Not signed: ${e.message}`, true);
        buttons.forEach((b) => { b.disabled = false; });
      }
    });
    try {
      checked = await checkedPlan(section);
      key = await getKey(section.dataset.approver);
    } catch (e) {
      checked = { problem: e.message };
    }
    if (!checked.plan) {
      section.dataset.check = 'failed';
      say(status, `Refusing to sign: ${checked.problem}.`, true);
      return;
    }
    document.getElementById('signed-digest').textContent = checked.digest;
    renderSteps(document.getElementById('signed-steps'), checked.plan);
    document.getElementById('signed-view').hidden = false;
    if (!key) {
      section.dataset.check = 'no-key';
      say(status, `This browser holds no key of ${section.dataset.approver}: enrol it with an invite link.`, true);
      return;
    }
    section.dataset.check = 'ok';
    say(status, `Checked: the signed plan's digest is ${checked.digest}, this page's plan. You sign what is shown.`);
    buttons.forEach((b) => { b.disabled = false; });
  }

  window.writ = { canonical, canonicalBytes, approvalStatement, pae, b64, sha256hex, getKey, allKeys, signEnvelope };

  const page = document.body.dataset.page;
  const run = { enrol: enrolPage, login: loginPage, plan: planPage }[page];
  if (run) {
    run().catch((e) => {
      const status = document.querySelector('[role="status"]');
      if (status) say(status, `Error: ${e.message}`, true);
    });
  }
})();
