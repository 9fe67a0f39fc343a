// Passkeys (WebAuthn): registration on /account/two-step, sign-in on /login and the
// second step on /login/two-step. The server makes the options and keeps the
// challenge; this file only converts between JSON and the browser's binary API.
(function () {
  "use strict";

  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function showError(message) {
    var box = document.getElementById("passkey-error");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrftoken": csrfToken() },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          throw new Error(data.error || data.detail || "The passkey could not be used. Try again.");
        }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (c) {
      return { type: c.type, id: toBytes(c.id), transports: c.transports };
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function credentialJSON(credential) {
    var r = credential.response;
    var response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      response.userHandle = toText(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: response,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    };
  }

  function unsupported() {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      showError("This browser cannot use passkeys.");
      return true;
    }
    return false;
  }

  function failed(error) {
    if (error && error.name === "NotAllowedError") {
      showError("The passkey request was cancelled or timed out.");
    } else if (error && error.name === "InvalidStateError") {
      showError("This device already holds a passkey for your account.");
    } else {
      showError((error && error.message) || "The passkey could not be used. Try again.");
    }
  }

  function signIn(button, extra) {
    if (unsupported()) { return; }
    button.disabled = true;
    postJSON(button.dataset.optionsUrl, {}).then(function (options) {
      return navigator.credentials.get({ publicKey: requestOptions(options.publicKey) })
        .then(function (credential) {
          var body = Object.assign({ ticket: options.ticket, credential: credentialJSON(credential) }, extra);
          return postJSON(button.dataset.url, body);
        });
    }).then(function (result) {
      window.location.assign(result.redirect || "/");
    }).catch(failed).then(function () { button.disabled = false; });
  }

  function register(button) {
    if (unsupported()) { return; }
    var nameField = document.getElementById("passkey-name");
    var name = nameField ? nameField.value.trim() : "";
    if (!name) {
      showError("Give the passkey a name, such as the device it is on.");
      if (nameField) { nameField.focus(); }
      return;
    }
    button.disabled = true;
    postJSON(button.dataset.optionsUrl, {}).then(function (options) {
      return navigator.credentials.create({ publicKey: creationOptions(options.publicKey) })
        .then(function (credential) {
          return postJSON(button.dataset.url, {
            ticket: options.ticket, name: name, credential: credentialJSON(credential)
          });
        });
    }).then(function (result) {
      window.location.assign(result.redirect || "/account/two-step");
    }).catch(failed).then(function () { button.disabled = false; });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLElement)) { return; }
    if (target.id === "passkey-sign-in") {
      signIn(target, { next: target.dataset.next || "" });
    } else if (target.id === "passkey-second-step") {
      signIn(target, {});
    } else if (target.id === "passkey-register") {
      register(target);
    }
  });
})();
