// Opens the sealed disclosures of a console page with the agency's private key, in the browser:
// the gateway never holds an agency's private key, so it can only hand over the sealed box
// (docs/decisions/0025). The key file is read here, used, and wiped; nothing of it is sent
// anywhere (the page's CSP has connect-src 'none' besides).
//
// DOM contract (the console's templates render it):
//   <section class="disclosure" data-sealed-box="BASE64" data-content="contact|community_need">
//     <input type="file" class="key-file">   (any key input opens every section of the page)
//     <p class="disclosure-error" role="alert" hidden data-wrong-key="…" data-bad-file="…"></p>
//     <dl class="disclosure-fields" hidden></dl>
//   </section>
//   <script type="application/json" id="disclosure-labels">{"given_name": "Given name", …}</script>
"use strict";

(function () {
  var KEY_BYTES = 32; // an X25519 private key (docs/integrators.md §7)
  // Its base64 with generous whitespace is far less; a larger file was chosen by mistake and
  // is not read at all.
  var MAX_KEY_FILE_BYTES = 4096;

  // The order a reader expects; a field the contract adds later still shows, after these.
  var FIELD_ORDER = {
    contact: ["given_name", "family_name", "contacts", "preferred_language"],
    community_need: [
      "agency_case_ref",
      "area",
      "category",
      "people_affected",
      "returnee_share",
      "description",
      "case_id",
    ],
  };
  // Which schema the box's JSON follows is for programs, not for the person reading it.
  var NOT_SHOWN = ["schema_version"];

  function labels() {
    var element = document.getElementById("disclosure-labels");
    if (element === null) return {};
    try {
      return JSON.parse(element.textContent || "{}");
    } catch (e) {
      return {};
    }
  }

  var BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  // The key's base64 text decoded byte by byte, never through a string: a JavaScript string
  // cannot be wiped, a Uint8Array can. Whitespace (a final newline, line breaks) is skipped;
  // anything else that is not base64 makes it no key (null).
  function decodedBase64(bytes) {
    var sextets = [];
    var padding = 0;
    for (var i = 0; i < bytes.length; i++) {
      var c = String.fromCharCode(bytes[i]);
      if (c === " " || c === "\t" || c === "\n" || c === "\r") continue;
      if (c === "=") {
        padding++;
        continue;
      }
      var value = BASE64.indexOf(c);
      if (value < 0 || padding > 0 || bytes[i] > 0x7f) return null;
      sextets.push(value);
    }
    if ((sextets.length + padding) % 4 !== 0 || padding > 2) return null;
    var out = new Uint8Array(Math.floor((sextets.length * 6) / 8));
    var bits = 0;
    var buffer = 0;
    var at = 0;
    for (var j = 0; j < sextets.length; j++) {
      buffer = ((buffer << 6) | sextets[j]) & 0xffffff;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out[at++] = (buffer >> bits) & 0xff;
      }
    }
    for (var k = 0; k < sextets.length; k++) sextets[k] = 0;
    buffer = 0;
    return out;
  }

  // A key file holds the base64 of the 32 bytes (as integrators.md §7 writes it), possibly
  // with a final newline, or the 32 raw bytes: base64 text of 32 bytes is 44 characters, so a
  // 32-byte file cannot be the text form.
  function privateKeyOf(sodium, bytes) {
    if (bytes.length === KEY_BYTES) return bytes.slice();
    var key = decodedBase64(bytes);
    if (key === null) return null;
    if (key.length !== KEY_BYTES) {
      sodium.memzero(key);
      return null;
    }
    return key;
  }

  function showError(section, which) {
    var fields = section.querySelector(".disclosure-fields");
    if (fields !== null) {
      fields.replaceChildren();
      fields.hidden = true;
    }
    var error = section.querySelector(".disclosure-error");
    if (error === null) return;
    error.textContent = error.getAttribute(which) || "";
    error.hidden = false;
  }

  function showErrorEverywhere(which) {
    document.querySelectorAll("section.disclosure").forEach(function (s) {
      showError(s, which);
    });
  }

  function valueText(value) {
    if (typeof value === "string") return value;
    if (typeof value === "number" || typeof value === "boolean") return String(value);
    return JSON.stringify(value);
  }

  function addField(list, label, values) {
    var term = document.createElement("dt");
    term.textContent = label;
    list.appendChild(term);
    values.forEach(function (value) {
      var description = document.createElement("dd");
      description.textContent = value; // textContent only: the box's content is never markup
      list.appendChild(description);
    });
  }

  function render(section, opened, names) {
    var list = section.querySelector(".disclosure-fields");
    if (list === null) return;
    list.replaceChildren();
    var order = FIELD_ORDER[section.dataset.content] || [];
    var keys = order.filter(function (k) {
      return Object.prototype.hasOwnProperty.call(opened, k);
    });
    Object.keys(opened).forEach(function (k) {
      if (keys.indexOf(k) < 0 && NOT_SHOWN.indexOf(k) < 0) keys.push(k);
    });
    keys.forEach(function (key) {
      var value = opened[key];
      if (value === null || value === "" || (Array.isArray(value) && value.length === 0)) return;
      var label = Object.prototype.hasOwnProperty.call(names, key) ? names[key] : key;
      if (key === "contacts" && Array.isArray(value)) {
        addField(
          list,
          label,
          value.map(function (c) {
            return valueText(c.kind) + ": " + valueText(c.value);
          })
        );
      } else {
        addField(list, label, [valueText(value)]);
      }
    });
    var error = section.querySelector(".disclosure-error");
    if (error !== null) {
      error.textContent = "";
      error.hidden = true;
    }
    list.hidden = false;
  }

  function openSection(sodium, section, publicKey, privateKey, names) {
    var plain = null;
    try {
      var box = sodium.from_base64(section.dataset.sealedBox || "", sodium.base64_variants.ORIGINAL);
      plain = sodium.crypto_box_seal_open(box, publicKey, privateKey);
      var opened = JSON.parse(sodium.to_string(plain));
      if (opened === null || typeof opened !== "object" || Array.isArray(opened)) throw new Error();
      render(section, opened, names);
    } catch (e) {
      // Not this agency's key (or a box that is not a disclosure): nothing of it is shown.
      showError(section, "data-wrong-key");
    } finally {
      if (plain !== null) sodium.memzero(plain);
    }
  }

  function openAll(sodium, bytes) {
    var sections = document.querySelectorAll("section.disclosure");
    var privateKey = privateKeyOf(sodium, bytes);
    sodium.memzero(bytes);
    if (privateKey === null) {
      showErrorEverywhere("data-bad-file");
      return;
    }
    try {
      var publicKey = sodium.crypto_scalarmult_base(privateKey);
      var names = labels();
      sections.forEach(function (s) {
        openSection(sodium, s, publicKey, privateKey, names);
      });
    } finally {
      sodium.memzero(privateKey);
    }
  }

  function onKeyFile(sodium, input) {
    var file = input.files && input.files[0];
    // The file's name and contents stay in this page only: the input forgets them at once.
    input.value = "";
    if (!file) return;
    if (file.size > MAX_KEY_FILE_BYTES) {
      showErrorEverywhere("data-bad-file");
      return;
    }
    var reader = new FileReader();
    reader.onload = function () {
      openAll(sodium, new Uint8Array(reader.result));
    };
    reader.onerror = function () {
      showErrorEverywhere("data-bad-file");
    };
    reader.readAsArrayBuffer(file);
  }

  function start() {
    var sodium = window.sodium;
    if (!sodium || !sodium.ready) return; // the vendored libsodium did not load
    sodium.ready.then(function () {
      document.querySelectorAll("input.key-file").forEach(function (input) {
        input.addEventListener("change", function () {
          onKeyFile(sodium, input);
        });
        input.disabled = false;
      });
      document.documentElement.dataset.disclosureReady = "true";
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
