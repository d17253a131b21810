// Send files as resumable (tus) uploads: each file goes to /api/v1/uploads in 8 MiB pieces and is
// encrypted as it arrives. A dropped connection resumes by itself with back-off and the page says so;
// after a reload, choosing the same file again resumes it where it stopped. Once every file is
// complete, one transfer is made of them (all or nothing). The session's CSRF token goes in a header.
//
// Files may be chosen or dropped on the page. They are checked against the gateway's own limits
// (allowed extensions, largest file, files per transfer: the form's data- attributes, rendered
// from the settings) before a byte is sent. While sending, the bar shows the speed and the time left, and
// "Cancel upload" stops and terminates every upload of the batch on the server (tus DELETE); so
// does a final refusal of one of its files.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.tus) { return; }
  var input = document.getElementById("files");
  var zone = document.getElementById("drop-zone");
  var chosen = document.getElementById("file-list");
  var bar = document.getElementById("progress");
  var progressText = document.getElementById("progress-text");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("send");
  var cancelButton = document.getElementById("cancel");
  var resumeNote = document.getElementById("resume-note");
  var csrf = form.dataset.csrf;
  var allowed = form.dataset.allowed.split(",");
  var maxSize = Number(form.dataset.maxSize);
  var maxSizeText = form.dataset.maxSizeText;
  var maxFiles = Number(form.dataset.maxFiles);
  var CHUNK = 8 * 1024 * 1024;
  // Back-off between attempts after a dropped connection: about ten minutes in all.
  var RETRY_DELAYS = [1000, 2000, 4000, 8000, 15000, 30000, 60000, 60000, 120000, 120000, 180000];
  // Telling the server to drop a cancelled upload is retried briefly: the user is waiting.
  var CANCEL_RETRY_DELAYS = [500, 1500];
  // How long a cancel waits for an upload being created to get its address (so that it can be ended).
  var CREATION_WAIT_MS = 10000;
  var SPEED_WINDOW_MS = 5000;
  var sending = null;  // the batch being sent: its current upload, the ids of those complete, its state

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "muted";
  }

  function sizeText(bytes) {
    var units = [["GiB", 1073741824], ["MiB", 1048576], ["KiB", 1024]];
    for (var i = 0; i < units.length; i++) {
      if (bytes >= units[i][1]) {
        return (bytes / units[i][1]).toFixed(1).replace(/\.0$/, "") + " " + units[i][0];
      }
    }
    return bytes + " bytes";
  }

  function durationText(seconds) {
    var s = Math.max(1, Math.ceil(seconds));
    if (s < 60) { return s + " s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " min " + (s % 60) + " s"; }
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function extension(name) {
    var dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
  }

  // Why these files cannot be sent, or "" when they can: the same rules the gateway applies.
  function refusal(files) {
    if (!files.length) { return "Choose at least one file, or drop it here."; }
    if (files.length > maxFiles) { return "At most " + maxFiles + " files per transfer."; }
    for (var i = 0; i < files.length; i++) {
      var f = files[i];
      if (allowed.indexOf(extension(f.name)) < 0) {
        return "\u201c" + f.name + "\u201d: this type of file is not accepted. Accepted: " + allowed.slice().sort().join(", ") + ".";
      }
      if (f.size > maxSize) {
        return "\u201c" + f.name + "\u201d is " + sizeText(f.size) + ": a file may be at most " + maxSizeText + ".";
      }
      if (f.size === 0) {
        return "\u201c" + f.name + "\u201d is empty.";
      }
    }
    return "";
  }

  function showChosen() {
    var files = Array.prototype.slice.call(input.files);
    chosen.textContent = "";
    files.forEach(function (f) {
      var item = document.createElement("li");
      item.textContent = f.name + " (" + sizeText(f.size) + ")";
      chosen.appendChild(item);
    });
    chosen.hidden = !files.length;
    var problem = files.length ? refusal(files) : "";
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    say(problem, !!problem);
  }

  input.addEventListener("change", showChosen);

  // Drag and drop: the dropped files become the input's files, checked like chosen ones.
  function carriesFiles(event) {
    var types = event.dataTransfer ? event.dataTransfer.types : [];
    return Array.prototype.indexOf.call(types, "Files") >= 0;
  }
  ["dragenter", "dragover"].forEach(function (kind) {
    zone.addEventListener(kind, function (event) {
      if (!carriesFiles(event) || sending) { return; }
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragging");
    });
  });
  zone.addEventListener("dragleave", function (event) {
    if (!zone.contains(event.relatedTarget)) { zone.classList.remove("dragging"); }
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (sending || !event.dataTransfer.files.length) { return; }
    input.files = event.dataTransfer.files;
    showChosen();
  });
  // A file dropped beside the zone must not replace the page (and the form typed so far) with the file.
  ["dragover", "drop"].forEach(function (kind) {
    window.addEventListener(kind, function (event) {
      if (carriesFiles(event) && !zone.contains(event.target)) { event.preventDefault(); }
    });
  });

  function messageOf(err) {
    var response = err && err.originalResponse;
    if (response) {
      try { return JSON.parse(response.getBody()).error.message; } catch (e) { /* not our JSON */ }
      return "The upload failed (" + response.getStatus() + ").";
    }
    return "The connection failed and could not be resumed. What was sent is kept: choose the same file and Send again to go on.";
  }

  // After a reload: say which uploads can be resumed. The link that dropped an upload may drop this
  // question too, so it is asked again with back-off until the gateway answers (at most six times).
  function listUnfinished(attempt) {
    var listing = new XMLHttpRequest();
    function again() {
      if (attempt < 5) { setTimeout(function () { listUnfinished(attempt + 1); }, Math.min(500 * Math.pow(2, attempt), 8000)); }
    }
    listing.open("GET", "/api/v1/uploads");
    listing.setRequestHeader("Accept", "application/json");
    listing.addEventListener("error", again);
    listing.addEventListener("load", function () {
      if (listing.status >= 500) { again(); return; }
      var open = [];
      try { open = JSON.parse(listing.responseText).filter(function (u) { return u.state === "open"; }); } catch (e) { open = []; }
      if (listing.status !== 200 || !open.length || sending) { return; }
      var names = open.map(function (u) {
        return u.file_name + " (" + Math.floor((u.offset / u.length) * 100) + "%)";
      }).join(", ");
      resumeNote.textContent = "Unfinished: " + names + ". Choose the same file again and press Send to resume where it stopped.";
      resumeNote.hidden = false;
    });
    listing.send();
  }
  listUnfinished(0);

  function recipients() {
    var billers = form.elements.biller_ids;
    if (!billers) { return ""; }
    return Array.prototype.map.call(billers.selectedOptions, function (o) { return o.value; }).join(",");
  }

  // Progress of the whole batch, with the speed over the last few seconds and the time left.
  function Meter(total) {
    this.total = total;
    this.samples = [];
  }
  Meter.prototype.update = function (done) {
    var now = Date.now();
    var last = this.samples[this.samples.length - 1];
    if (last && done < last.done) { this.samples = []; }  // a resume went back to the durable offset
    this.samples.push({ at: now, done: done });
    while (this.samples.length > 2 && now - this.samples[1].at > SPEED_WINDOW_MS) { this.samples.shift(); }
    // Never 100% before the transfer exists: the bar cannot sit full beside an error.
    bar.value = Math.min(99, Math.floor((done / this.total) * 100));
    var text = sizeText(done) + " of " + sizeText(this.total);
    var first = this.samples[0];
    var elapsed = (now - first.at) / 1000;
    if (elapsed >= 0.5 && done > first.done) {
      var speed = (done - first.done) / elapsed;
      text += " \u00b7 " + sizeText(speed) + "/s \u00b7 about " + durationText((this.total - done) / speed) + " left";
    } else {
      text += " \u00b7 measuring the speed\u2026";
    }
    progressText.textContent = text;
    progressText.hidden = false;
  };

  function settle() {
    sending = null;
    bar.hidden = true;
    bar.value = 0;
    progressText.hidden = true;
    progressText.textContent = "";
    cancelButton.hidden = true;
    cancelButton.disabled = false;
    button.disabled = false;
    input.disabled = false;
  }

  function sendOne(batch, file, base, meter) {
    var sentSoFar = 0;
    var dropped = -1;  // bytes sent when the link dropped, until the upload gets past them again
    return new Promise(function (resolve, reject) {
      batch.fail = reject;
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
            say("The connection dropped. Resuming by itself (attempt " + (attempt + 1) + ")\u2026 Keep this page open.");
          }
          return again;
        },
        onProgress: function (sent) {
          sentSoFar = sent;
          meter.update(base + sent);
          if (dropped < 0) {
            say("Encrypting and uploading " + file.name + "\u2026");
          } else if (sent > dropped) {
            dropped = -1;
            say("The connection is back; " + file.name + " goes on from where it stopped.");
          }
        },
        onUploadUrlAvailable: function () { if (batch.created) { batch.created(); } },
        onSuccess: function () { resolve(upload.url.split("/").pop()); },
        onError: function (err) { reject(err); }
      });
      batch.upload = upload;
      batch.starting = false;
      upload.findPreviousUploads().then(function (previous) {
        if (batch.cancelled) { return; }
        if (previous.length) {
          upload.resumeFromPreviousUpload(previous[0]);
          say("Resuming " + file.name + " where it stopped\u2026");
        }
        batch.starting = true;
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
      settle();
      say((body && body.error) ? body.error.message : "The transfer could not be made (" + xhr.status + ").", true);
    });
    xhr.addEventListener("error", function () {
      settle();
      say("The connection failed before the transfer was made; the files are kept. Press Send again.", true);
    });
    xhr.send(JSON.stringify({ upload_ids: ids }));
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (sending) { return; }
    var files = Array.prototype.slice.call(input.files);
    var problem = refusal(files);
    if (problem) {
      say(problem, true);
      input.focus();
      return;
    }
    var batch = { upload: null, ids: [], cancelled: false, fail: null, starting: false, created: null };
    var meter = new Meter(files.reduce(function (sum, f) { return sum + f.size; }, 0));
    var base = 0;
    sending = batch;
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    input.disabled = true;  // the batch is fixed while it is sent
    cancelButton.hidden = false;
    resumeNote.hidden = true;
    say("Encrypting and uploading\u2026");
    files.reduce(function (previous, file) {
      return previous.then(function () {
        return sendOne(batch, file, base, meter).then(function (id) {
          batch.ids.push(id);
          base += file.size;
        });
      });
    }, Promise.resolve()).then(function () {
      cancelButton.hidden = true;  // every file is in: the transfer is made now
      say("Making the transfer\u2026");
      makeTransfer(batch.ids);
    }, function (err) {
      if (batch.cancelled) { return; }  // the cancel handler has the last word
      settle();
      say(messageOf(err), true);
      // A refusal of the file is final (a dropped link, a moved offset or an ended session is not):
      // the batch can never become a transfer, so nothing of it is left on the server.
      var code = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
      if (code >= 400 && code < 500 && [401, 403, 409, 423].indexOf(code) < 0) {
        batch.starting = false;  // nothing is in flight after a final answer
        endBatch(batch).catch(function () { /* it expires by itself */ });
      }
    });
  });

  // Terminates, on the server, the batch's upload under way and those already complete (tus DELETE).
  function endBatch(batch) {
    var options = { headers: { "X-CSRF-Token": csrf }, retryDelays: CANCEL_RETRY_DELAYS };
    var endings = batch.ids.map(function (id) {
      return window.tus.Upload.terminate("/api/v1/uploads/" + encodeURIComponent(id), options);
    });
    var upload = batch.upload;
    if (upload) {
      // abort(true) terminates with the upload's own options: retry briefly, and not as a dropped link.
      upload.options = Object.assign({}, upload.options, { retryDelays: CANCEL_RETRY_DELAYS, onShouldRetry: null });
      if (upload.url || !batch.starting) {
        endings.push(upload.abort(true));
      } else {
        // Being created: aborting now would leave the server an upload the page never hears of.
        // Let the creation answer, then end the upload before any byte of it is sent.
        endings.push(new Promise(function (resolve, reject) {
          var wait = setTimeout(function () {
            batch.created = null;
            upload.abort(false);
            reject(new Error("the upload was not created in time to be ended"));
          }, CREATION_WAIT_MS);
          batch.created = function () {
            clearTimeout(wait);
            batch.created = null;
            upload.abort(true).then(resolve, reject);
          };
        }));
      }
    }
    return Promise.all(endings);
  }

  // Cancel: stop sending and terminate, on the server, the upload in progress and those already complete.
  cancelButton.addEventListener("click", function () {
    var batch = sending;
    if (!batch || batch.cancelled) { return; }
    batch.cancelled = true;
    cancelButton.disabled = true;
    say("Cancelling\u2026");
    var ending = endBatch(batch);
    if (batch.fail) { batch.fail(new Error("cancelled")); }
    ending.then(function () {
      settle();
      say("Cancelled. Nothing of these files is kept on the server.");
    }, function () {
      settle();
      say("Sending stopped, but the server could not be reached to remove what was already sent. It is removed by itself when the upload expires; choose the files and Send to start again.", true);
    });
  });
}());
