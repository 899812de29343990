// Follows a running action's progress (server-sent events); everything else works without
// JavaScript.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var job = document.getElementById("job");
  if (!job || job.dataset.running !== "true" || !window.EventSource) return;
  var log = document.getElementById("job-log");
  var status = document.getElementById("job-status");
  var events = new EventSource("/api/jobs/" + encodeURIComponent(job.dataset.id) + "/events");
  // Each connection, a reconnection too, sends the output from its first line.
  events.onopen = function () { log.textContent = ""; };
  events.addEventListener("line", function (e) {
    log.textContent += e.data + "\n";
    log.scrollTop = log.scrollHeight;
  });
  events.addEventListener("done", function (e) {
    var d = JSON.parse(e.data);
    var text, cls;
    if (d.exit_code === 0) { text = "succeeded"; cls = "green"; }
    else if (d.result === "partial") { text = "partial (exit code " + d.exit_code + ")"; cls = "amber"; }
    else { text = "failed (exit code " + d.exit_code + ")"; cls = "red"; }
    status.textContent = text;
    status.className = "status status-" + cls;
    job.dataset.running = "false";
    events.close();
  });
});
