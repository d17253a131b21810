// Upload with a progress bar: the multipart body streams to /api/v1/transfers,
// where it is encrypted as it arrives. The session's CSRF token goes in a header.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var bar = document.getElementById("progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("send");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    // Fields first, files last: the server reads them in this order while it streams.
    var data = new FormData();
    data.append("partner_id", form.elements.partner_id.value);
    data.append("purpose", form.elements.purpose.value);
    data.append("note", form.elements.note.value);
    var billers = form.elements.biller_ids;
    if (billers) {
      Array.prototype.forEach.call(billers.selectedOptions, function (o) { data.append("biller_ids", o.value); });
    }
    Array.prototype.forEach.call(form.elements.files.files, function (f) { data.append("files", f, f.name); });

    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/transfers");
    xhr.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    status.textContent = "Encrypting and uploading…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { bar.value = Math.round((e.loaded / e.total) * 100); }
    });
    xhr.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status === 201 && body && body.id) {
        bar.value = 100;
        window.location.assign("/transfers/" + encodeURIComponent(body.id));
        return;
      }
      button.disabled = false;
      status.textContent = (body && body.error) ? body.error.message : "The upload failed (" + xhr.status + ").";
      status.className = "error";
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      status.textContent = "The connection failed; nothing was kept. Try again.";
      status.className = "error";
    });
    xhr.send(data);
  });
}());
