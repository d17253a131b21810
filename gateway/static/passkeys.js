// Passkeys (WebAuthn) for the gateway's own forms, under the strict CSP (no inline script).
//
// A form marked data-passkey-assert="login|stepup" that is sent without a code first asks the
// server for a challenge (bound to this session, single-use), lets the browser's authenticator
// answer it (navigator.credentials.get, user verification required) and sends the answer in the
// hidden field `passkey_assertion`. A form marked data-passkey-register also runs
// navigator.credentials.create and sends the answer in the hidden field `credential`. The server
// checks everything; this file only carries bytes between the authenticator and the form.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) { return; }

  function toBytes(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i += 1) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (d) { return { type: d.type, id: toBytes(d.id), transports: d.transports }; });
  }

  // The JSON form of a PublicKeyCredential (WebAuthn Level 3 toJSON()), binary fields in base64url.
  function credentialJSON(cred, response) {
    response.clientDataJSON = toB64url(cred.response.clientDataJSON);
    return JSON.stringify({
      id: cred.id, rawId: toB64url(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults(), response: response
    });
  }

  function post(form, url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-CSRF-Token": form.elements.csrf_token.value },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) { throw new Error(json.error ? json.error.message : "The server refused the passkey."); }
        return json;
      });
    });
  }

  function assertInto(form, purpose) {
    return post(form, "/api/v1/auth/passkeys/assertion-options", { purpose: purpose }).then(function (o) {
      return navigator.credentials.get({ publicKey: {
        challenge: toBytes(o.challenge), timeout: o.timeout, rpId: o.rpId,
        allowCredentials: descriptors(o.allowCredentials), userVerification: o.userVerification
      } });
    }).then(function (cred) {
      form.elements.passkey_assertion.value = credentialJSON(cred, {
        authenticatorData: toB64url(cred.response.authenticatorData),
        signature: toB64url(cred.response.signature),
        userHandle: cred.response.userHandle ? toB64url(cred.response.userHandle) : undefined
      });
    });
  }

  function createInto(form) {
    return post(form, "/api/v1/auth/passkeys/registration-options").then(function (o) {
      return navigator.credentials.create({ publicKey: {
        rp: o.rp, challenge: toBytes(o.challenge), timeout: o.timeout, attestation: o.attestation,
        user: { id: toBytes(o.user.id), name: o.user.name, displayName: o.user.displayName },
        pubKeyCredParams: o.pubKeyCredParams, excludeCredentials: descriptors(o.excludeCredentials),
        authenticatorSelection: o.authenticatorSelection
      } });
    }).then(function (cred) {
      form.elements.credential.value = credentialJSON(cred, {
        attestationObject: toB64url(cred.response.attestationObject),
        transports: cred.response.getTransports ? cred.response.getTransports() : []
      });
    });
  }

  function say(form, message) {
    var status = form.querySelector(".passkey-status");
    if (status) { status.textContent = message; status.hidden = false; }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var purpose = form.dataset.passkeyAssert;
    var register = form.dataset.passkeyRegister !== undefined;
    var code = form.elements.code;
    // A code typed in is the user's choice: send it as it is.
    var useAssertion = purpose && !(code && code.value.trim());
    if (!useAssertion && !register) { return; }
    event.preventDefault();
    var buttons = form.querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    var steps = Promise.resolve();
    if (useAssertion) { steps = steps.then(function () { return assertInto(form, purpose); }); }
    if (register) { steps = steps.then(function () { return createInto(form); }); }
    steps.then(function () {
      form.submit();
    }).catch(function (err) {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
      var cancelled = err && (err.name === "NotAllowedError" || err.name === "AbortError");
      say(form, cancelled ? "The passkey prompt was cancelled or timed out. Try again."
        : (err && err.name === "InvalidStateError") ? "This authenticator is registered already."
          : (err && err.message) || "The passkey could not be used.");
    });
  });
}());
