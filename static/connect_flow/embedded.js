/* Relink embedded connect flow: the page side of the protocol the reference Connect JS library speaks.
 *
 * On the success page it posts {type: "success", data: {activation_token}} to the framing page; the
 * "Close" button posts {type: "close"}. Data comes from data- attributes (no inline script, so the
 * page's CSP can forbid inline code).
 *
 * targetOrigin: the browser drops a message whose targetOrigin is not the parent's origin, so one
 * copy is posted per allowed origin and only the real parent, if it is one of them, receives it (a
 * single "first allowed origin" would miss a parent on the second). "*" is used only when no origin
 * is configured, and then CSP frame-ancestors 'none' means no page can frame this one at all.
 */
(function () {
  "use strict";
  var body = document.body;
  if (!body || !body.hasAttribute("data-relink-embedded")) return;
  var framed = window.parent !== window;
  var origins = (body.getAttribute("data-target-origins") || "").split(" ").filter(Boolean);

  function send(message) {
    if (!framed) return;
    (origins.length ? origins : ["*"]).forEach(function (origin) {
      window.parent.postMessage(message, origin);
    });
  }

  var success = document.querySelector("[data-relink-success]");
  if (success) {
    send({type: "success", data: {activation_token: success.getAttribute("data-activation-token")}});
  }

  // Outside a frame there is nothing to close, so the button stays hidden.
  if (framed) {
    document.querySelectorAll("[data-relink-close]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { send({type: "close"}); });
    });
  }
})();
