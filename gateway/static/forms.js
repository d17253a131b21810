// The gateway's forms, under the strict CSP (no inline script): confirmation and the page's address.
//
// A form marked data-confirm="question" asks first, in a native <dialog>; only "Confirm" sends it,
// with its hidden field `confirmed` set to "yes". Without script the server answers such a form
// with a confirmation page instead, so the action never happens on one click either way.
// A page answering a form (an error, a confirmation) names its own address in
// <link rel="canonical">; it replaces the form's URL in the location bar, so a reload or a
// bookmark opens the page rather than sending the form again.
(function () {
  "use strict";

  var canonical = document.querySelector('link[rel="canonical"]');
  if (canonical && window.history && history.replaceState) {
    var target = canonical.getAttribute("href");
    if (target && target.charAt(0) === "/" && target !== location.pathname) {
      history.replaceState(null, "", target);
    }
  }

  if (typeof HTMLDialogElement !== "function") { return; }  // the confirmation page takes over

  var dialog = null;
  var pending = null;

  function build() {
    dialog = document.createElement("dialog");
    dialog.id = "confirm-dialog";
    dialog.setAttribute("aria-labelledby", "confirm-dialog-question");
    var question = document.createElement("p");
    question.id = "confirm-dialog-question";
    var actions = document.createElement("form");
    actions.method = "dialog";
    actions.className = "actions";
    var ok = document.createElement("button");
    ok.value = "confirm";
    ok.className = "danger";
    ok.id = "confirm-dialog-ok";
    var cancel = document.createElement("button");
    cancel.value = "cancel";
    cancel.className = "secondary";
    cancel.textContent = "Cancel";
    actions.appendChild(ok);
    actions.appendChild(cancel);
    dialog.appendChild(question);
    dialog.appendChild(actions);
    document.body.appendChild(dialog);
    dialog.addEventListener("close", function () {
      var form = pending;
      pending = null;
      if (!form || dialog.returnValue !== "confirm") { return; }
      var field = form.elements.confirmed;
      if (field) { field.value = "yes"; }
      form.dataset.confirmedOnce = "yes";
      if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
    });
  }

  // Capture phase: ask before any other handler (the passkey ceremony) starts on this submit.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) { return; }
    if (form.dataset.confirmedOnce === "yes") {
      delete form.dataset.confirmedOnce;  // asked again on the next submit (after an error, say)
      return;
    }
    event.preventDefault();
    event.stopImmediatePropagation();
    if (!dialog) { build(); }
    pending = form;
    dialog.querySelector("#confirm-dialog-question").textContent = form.dataset.confirm;
    dialog.querySelector("#confirm-dialog-ok").textContent = form.dataset.confirmButton || "Confirm";
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector("button.secondary").focus();
  }, true);
}());
