// The /api/docs page: Swagger UI (vendored, scripts/vendor_swagger_ui.py) over the gateway's own schema.
// A file, not an inline script, so the page runs under the gateway's strict CSP unchanged.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  var csrf = root.dataset.csrf;
  window.SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    domNode: root,
    // The public validator is another site: the CSP blocks it, and the schema stays here.
    validatorUrl: null,
    deepLinking: false,
    // "Try it out" runs with the page's session; a state-changing call echoes its CSRF token.
    requestInterceptor: function (req) {
      if (csrf && req.method && req.method.toUpperCase() !== "GET") {
        req.headers["X-CSRF-Token"] = csrf;
      }
      return req;
    },
  });
  // Swagger UI's dialogs close with an icon-only button that has no name (axe: critical button-name);
  // name each as it appears, so a screen reader announces it.
  new MutationObserver(function () {
    root.querySelectorAll("button.close-modal:not([aria-label])").forEach(function (button) {
      button.setAttribute("aria-label", "Close");
    });
  }).observe(root, { childList: true, subtree: true });
})();
