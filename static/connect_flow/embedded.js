/* Relink embedded connect flow: the page side of the protocol the reference Connect JS library speaks.
 *
 * On the success page it posts {type: "success", data: {activation_token}} to the framing page; the
 * "Close" button posts {type: "close"}. Data comes from data- attributes (no inline script, so the
 * page's CSP can forbid inline code).
 *
 * OAuth tools: the consent opens in a new tab (providers refuse to be framed), which cannot message
 * this frame. After "Continue", this page polls its link's handoff URL until the customer has
 * finished there, then posts the activation token the server hands over, once.
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

  var handoff = document.querySelector("form[data-relink-handoff]");
  if (handoff) {
    var polling = false;
    var show = function (id) {
      ["relink-waiting", "relink-done"].forEach(function (other) {
        document.getElementById(other).hidden = other !== id;
      });
      document.getElementById(id).scrollIntoView({block: "nearest"});
    };
    var poll = function () {
      var data = new FormData();
      data.append("form_token", handoff.elements.form_token.value);
      fetch(handoff.getAttribute("data-relink-handoff"), {method: "POST", body: data, credentials: "omit", cache: "no-store"})
        .then(function (response) { return response.json(); })
        .then(function (answer) {
          if (answer.status === "waiting") {
            window.setTimeout(poll, 2000);
          } else if (answer.status === "completed") {
            show("relink-done");
            if (answer.activation_token) send({type: "success", data: {activation_token: answer.activation_token}});
          } else {
            window.location.reload();  // expired, revoked: the page says so
          }
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    };
    handoff.addEventListener("submit", function () {
      show("relink-waiting");
      if (!polling) {
        polling = true;
        window.setTimeout(poll, 2000);
      }
    });
  }

  // Outside a frame there is nothing to close, so the button stays hidden.
  if (framed) {
    document.querySelectorAll("[data-relink-close]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () { send({type: "close"}); });
    });
  }
})();
