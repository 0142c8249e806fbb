/* Relink Connect for the embedding app: open a connect or reconnect link in a modal iframe.
 *
 *   <script src="https://relink.example.com/static/relink-connect.js"></script>
 *   openRelinkConnect(link).then(
 *     function (activationToken) { ... send it to your backend, which calls
 *                                   GET /v1/connect/integration-by-token/<activationToken> ... },
 *     function () { ... the customer closed the window ... });
 *
 * Messages are accepted only from this iframe's window AND from the link's origin: checking the
 * origin alone would accept another frame of that origin, checking the source alone a frame that
 * navigated elsewhere. The iframe is removed once the promise settles.
 */
(function (global) {
  "use strict";

  function style(element, rules) {
    Object.keys(rules).forEach(function (name) { element.style[name] = rules[name]; });
  }

  function openRelinkConnect(url) {
    return new Promise(function (resolve, reject) {
      var origin = new URL(url, global.location.href).origin;
      var overlay = document.createElement("div");
      style(overlay, {
        position: "fixed", inset: "0", zIndex: "2147483000", background: "rgba(17, 24, 39, .55)",
        display: "flex", alignItems: "center", justifyContent: "center",
      });
      var iframe = document.createElement("iframe");
      iframe.src = url;
      iframe.title = "Relink Connect";
      style(iframe, {
        width: "min(36rem, 100vw)", height: "min(44rem, 100vh)", border: "0",
        borderRadius: "10px", background: "#fff", boxShadow: "0 10px 40px rgba(0, 0, 0, .3)",
      });
      overlay.appendChild(iframe);

      var settled = false;
      function finish() {
        settled = true;
        global.removeEventListener("message", onMessage);
        global.removeEventListener("keydown", onKey);
        if (overlay.parentNode) overlay.parentNode.removeChild(overlay);
      }
      function onMessage(event) {
        if (settled || event.source !== iframe.contentWindow || event.origin !== origin) return;
        var data = event.data;
        if (!data || typeof data !== "object") return;
        if (data.type === "success" && data.data && typeof data.data.activation_token === "string") {
          finish();
          resolve(data.data.activation_token);
        } else if (data.type === "close") {
          finish();
          reject(new Error("Relink Connect was closed"));
        }
      }
      function onKey(event) {
        if (event.key === "Escape" && !settled) {
          finish();
          reject(new Error("Relink Connect was closed"));
        }
      }
      global.addEventListener("message", onMessage);
      global.addEventListener("keydown", onKey);
      document.body.appendChild(overlay);
    });
  }

  global.openRelinkConnect = openRelinkConnect;
})(window);
