// Hearth's passkey ceremonies. The browser's WebAuthn API has no form, so
// this script runs the ceremony and hands its result to an ordinary form,
// which the server checks like any other. Without JavaScript (or WebAuthn)
// the passkey forms stay hidden and the pages work with passwords.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) return;

  function toB64u(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function fromB64u(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function ids(list) {
    (list || []).forEach(function (c) { c.id = fromB64u(c.id); });
  }
  function encode(cred) {
    var r = cred.response, out = { id: cred.id, rawId: toB64u(cred.rawId), type: cred.type,
      response: { clientDataJSON: toB64u(r.clientDataJSON) },
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {} };
    if (r.attestationObject) {
      out.response.attestationObject = toB64u(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = toB64u(r.authenticatorData);
      out.response.signature = toB64u(r.signature);
      if (r.userHandle) out.response.userHandle = toB64u(r.userHandle);
    }
    return JSON.stringify(out);
  }
  function say(form, text) {
    var el = form.querySelector(".passkey-status");
    if (el) el.textContent = text;
  }

  // form: the ceremony's form; create: registration or sign-in.
  function wire(form, create) {
    form.hidden = false;
    form.addEventListener("submit", function (ev) {
      if (form.elements.ceremony.value) return; // the ceremony is done: post
      ev.preventDefault();
      var body = new URLSearchParams();
      if (form.elements.csrf) body.set("csrf", form.elements.csrf.value);
      fetch(form.getAttribute("data-options"), { method: "POST", body: body, credentials: "same-origin" })
        .then(function (res) { if (!res.ok) throw new Error("options " + res.status); return res.json(); })
        .then(function (j) {
          var pk = j.options.publicKey;
          pk.challenge = fromB64u(pk.challenge);
          if (create) {
            pk.user.id = fromB64u(pk.user.id);
            ids(pk.excludeCredentials);
            return navigator.credentials.create({ publicKey: pk }).then(function (c) { return [j.ceremony, c]; });
          }
          ids(pk.allowCredentials);
          return navigator.credentials.get({ publicKey: pk }).then(function (c) { return [j.ceremony, c]; });
        })
        .then(function (r) {
          form.elements.ceremony.value = r[0];
          form.elements[create ? "credential" : "assertion"].value = encode(r[1]);
          form.submit();
        })
        .catch(function () { say(form, "The passkey did not work. Try again, or use your password."); });
    });
  }

  var signin = document.getElementById("passkey-signin");
  if (signin) wire(signin, false);
  var add = document.getElementById("passkey-add");
  if (add) wire(add, true);
})();
