// Send files as resumable (tus) uploads: each file goes to /api/v1/uploads in 8 MiB pieces and is
// encrypted as it arrives. A dropped connection resumes by itself with back-off and the page says so;
// after a reload, choosing the same file again resumes it where it stopped. Once every file is
// complete, one transfer is made of them (all or nothing). The session's CSRF token goes in a header.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.tus) { return; }
  var bar = document.getElementById("progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("send");
  var resumeNote = document.getElementById("resume-note");
  var csrf = form.dataset.csrf;
  var CHUNK = 8 * 1024 * 1024;
  // Back-off between attempts after a dropped connection: about ten minutes in all.
  var RETRY_DELAYS = [1000, 2000, 4000, 8000, 15000, 30000, 60000, 60000, 120000, 120000, 180000];

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "muted";
  }

  function messageOf(err) {
    var response = err && err.originalResponse;
    if (response) {
      try { return JSON.parse(response.getBody()).error.message; } catch (e) { /* not our JSON */ }
      return "The upload failed (" + response.getStatus() + ").";
    }
    return "The connection failed and could not be resumed. What was sent is kept: choose the same file and Send again to go on.";
  }

  // After a reload: say which uploads can be resumed.
  var listing = new XMLHttpRequest();
  listing.open("GET", "/api/v1/uploads");
  listing.setRequestHeader("Accept", "application/json");
  listing.addEventListener("load", function () {
    var open = [];
    try { open = JSON.parse(listing.responseText).filter(function (u) { return u.state === "open"; }); } catch (e) { open = []; }
    if (listing.status !== 200 || !open.length) { return; }
    var names = open.map(function (u) {
      return u.file_name + " (" + Math.floor((u.offset / u.length) * 100) + "%)";
    }).join(", ");
    resumeNote.textContent = "Unfinished: " + names + ". Choose the same file again and press Send to resume where it stopped.";
    resumeNote.hidden = false;
  });
  listing.send();

  function recipients() {
    var billers = form.elements.biller_ids;
    if (!billers) { return ""; }
    return Array.prototype.map.call(billers.selectedOptions, function (o) { return o.value; }).join(",");
  }

  function sendOne(file, index, count) {
    var sentSoFar = 0;
    var dropped = -1;  // bytes sent when the link dropped, until the upload gets past them again
    return new Promise(function (resolve, reject) {
      var upload = new window.tus.Upload(file, {
        endpoint: "/api/v1/uploads",
        chunkSize: CHUNK,
        retryDelays: RETRY_DELAYS,
        headers: { "X-CSRF-Token": csrf },
        metadata: {
          filename: file.name, partner_id: form.elements.partner_id.value, purpose: form.elements.purpose.value,
          note: form.elements.note.value, recipients: recipients()
        },
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onShouldRetry: function (err, attempt) {
          var code = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
          // No answer, a moved offset or a server hiccup: try again. Any other refusal is final.
          var again = code === 0 || code === 409 || code === 423 || code >= 500;
          if (again) {
            dropped = Math.max(dropped, sentSoFar);
            say("The connection dropped. Resuming by itself (attempt " + (attempt + 1) + ")… Keep this page open.");
          }
          return again;
        },
        onProgress: function (sent, total) {
          sentSoFar = sent;
          bar.value = Math.round(((index + sent / total) / count) * 100);
          if (dropped < 0) {
            say("Encrypting and uploading " + file.name + "…");
          } else if (sent > dropped) {
            dropped = -1;
            say("The connection is back; " + file.name + " goes on from where it stopped.");
          }
        },
        onSuccess: function () { resolve(upload.url.split("/").pop()); },
        onError: function (err) { reject(err); }
      });
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) {
          upload.resumeFromPreviousUpload(previous[0]);
          say("Resuming " + file.name + " where it stopped…");
        }
        upload.start();
      });
    });
  }

  function makeTransfer(ids) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/uploads/transfers");
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 201 && body && body.id) {
        bar.value = 100;
        window.location.assign("/transfers/" + encodeURIComponent(body.id));
        return;
      }
      button.disabled = false;
      say((body && body.error) ? body.error.message : "The transfer could not be made (" + xhr.status + ").", true);
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      say("The connection failed before the transfer was made; the files are kept. Press Send again.", true);
    });
    xhr.send(JSON.stringify({ upload_ids: ids }));
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var files = Array.prototype.slice.call(form.elements.files.files);
    var ids = [];
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    resumeNote.hidden = true;
    say("Encrypting and uploading…");
    files.reduce(function (previous, file, index) {
      return previous.then(function () {
        return sendOne(file, index, files.length).then(function (id) { ids.push(id); });
      });
    }, Promise.resolve()).then(function () {
      makeTransfer(ids);
    }, function (err) {
      button.disabled = false;
      say(messageOf(err), true);
    });
  });
}());
