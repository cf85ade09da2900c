// The browser side of Gatehouse's passkeys: it turns the server's options
// (JSON, base64url) into what navigator.credentials expects, and the
// browser's answer back into JSON for a form field. The server checks
// everything; this file only carries bytes. No inline script: the pages'
// Content-Security-Policy allows scripts from this origin only.
(function () {
  'use strict';

  function toBuffer(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toBase64URL(buf) {
    var bytes = new Uint8Array(buf);
    var bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: toBuffer(c.id) });
    });
  }

  function requestOptions(pk) {
    var o = Object.assign({}, pk, { challenge: toBuffer(pk.challenge) });
    if (pk.allowCredentials) o.allowCredentials = descriptors(pk.allowCredentials);
    return o;
  }

  function creationOptions(pk) {
    var o = Object.assign({}, pk, { challenge: toBuffer(pk.challenge) });
    o.user = Object.assign({}, pk.user, { id: toBuffer(pk.user.id) });
    if (pk.excludeCredentials) o.excludeCredentials = descriptors(pk.excludeCredentials);
    return o;
  }

  function assertionJSON(c) {
    var r = c.response;
    var resp = {
      clientDataJSON: toBase64URL(r.clientDataJSON),
      authenticatorData: toBase64URL(r.authenticatorData),
      signature: toBase64URL(r.signature)
    };
    if (r.userHandle && r.userHandle.byteLength) resp.userHandle = toBase64URL(r.userHandle);
    return JSON.stringify({
      id: c.id, rawId: toBase64URL(c.rawId), type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      response: resp, clientExtensionResults: c.getClientExtensionResults()
    });
  }

  function attestationJSON(c) {
    var r = c.response;
    return JSON.stringify({
      id: c.id, rawId: toBase64URL(c.rawId), type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      response: {
        clientDataJSON: toBase64URL(r.clientDataJSON),
        attestationObject: toBase64URL(r.attestationObject),
        transports: r.getTransports ? r.getTransports() : []
      },
      clientExtensionResults: c.getClientExtensionResults()
    });
  }

  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials);
  }

  function showUnsupported() {
    var el = document.getElementById('passkey-unsupported');
    if (el) el.hidden = false;
  }

  // fetchOptions posts the form's CSRF token to its options URL.
  function fetchOptions(form) {
    var body = new URLSearchParams();
    body.set('_csrf', form.elements._csrf.value);
    return fetch(form.dataset.optionsUrl, {
      method: 'POST', credentials: 'same-origin', body: body,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' }
    }).then(function (res) {
      return res.json().then(function (data) {
        if (data.redirect) {
          window.location.assign(data.redirect);
          throw new Error('redirected');
        }
        if (!res.ok || !data.options) throw new Error('no options');
        return data.options;
      });
    });
  }

  // The login page: a button, and the browser's passkey autofill on the
  // username field (conditional mediation), which the button cancels.
  function setupLogin(form) {
    var pending = null;
    var submitted = false;
    function signIn(options, mediation) {
      var ctrl = new AbortController();
      var req = { publicKey: requestOptions(options.publicKey), signal: ctrl.signal };
      if (mediation) req.mediation = mediation;
      pending = ctrl;
      return navigator.credentials.get(req).then(function (cred) {
        // The autofill and the button may both answer: send one.
        if (!cred || submitted) return;
        submitted = true;
        form.elements.credential.value = assertionJSON(cred);
        form.submit();
      });
    }
    function conditional() {
      if (!PublicKeyCredential.isConditionalMediationAvailable) return;
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (!ok) return;
        return fetchOptions(form).then(function (o) { return signIn(o, 'conditional'); });
      }).catch(function () {});
    }
    document.getElementById('passkey-signin').addEventListener('click', function () {
      if (submitted) return;
      if (pending) pending.abort();
      fetchOptions(form).then(function (o) { return signIn(o); }).catch(function (e) {
        if (e && e.name !== 'AbortError' && e.message !== 'redirected') conditional();
      });
    });
    conditional();
  }

  // The second-factor page: the options came with the page.
  function setupSecondFactor(step) {
    var button = document.getElementById('passkey-button');
    var code = document.getElementById('code');
    var submitted = false;
    button.addEventListener('click', function () {
      var options = JSON.parse(step.dataset.options || '{}');
      if (!options.publicKey || submitted) return;
      navigator.credentials.get({ publicKey: requestOptions(options.publicKey) }).then(function (cred) {
        if (submitted) return;
        submitted = true;
        code.value = assertionJSON(cred);
        code.form.submit();
      }).catch(function (e) {
        var err = document.getElementById('passkey-unsupported');
        err.textContent = 'The passkey prompt closed without an answer' + (e && e.name ? ' (' + e.name + ')' : '') + '. Try again.';
        err.hidden = false;
      });
    });
  }

  // The settings page: add a passkey.
  function setupAdd(form) {
    document.getElementById('passkey-add-button').addEventListener('click', function () {
      fetchOptions(form).then(function (options) {
        return navigator.credentials.create({ publicKey: creationOptions(options.publicKey) });
      }).then(function (cred) {
        form.elements.credential.value = attestationJSON(cred);
        form.submit();
      }).catch(function (e) {
        if (e && e.message === 'redirected') return;
        var err = document.getElementById('error');
        if (!err) {
          err = document.createElement('p');
          err.id = 'error';
          err.className = 'error';
          err.setAttribute('role', 'alert');
          form.parentNode.insertBefore(err, form);
        }
        err.textContent = 'The passkey was not added' + (e && e.name ? ' (' + e.name + ')' : '') + '.';
      });
    });
  }

  function start() {
    var login = document.getElementById('passkey-login');
    var step = document.getElementById('passkey-step');
    var add = document.getElementById('passkey-add');
    if ((login || step || add) && !supported()) {
      showUnsupported();
      return;
    }
    if (login) setupLogin(login);
    if (step) setupSecondFactor(step);
    if (add) setupAdd(add);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
