// The live log of a running kernel version: the server's log stream (what `kaggle kernels logs --follow`
// reads), appended to the log the page already shows. The stream replays from the first line on every
// (re)connection, so lines already shown are skipped; at the end the page reloads with the output.
"use strict";
(function () {
  const log = document.getElementById("log");
  if (!log || !log.dataset.stream) return;
  // as web_outputs.display_text: control sequences dropped, a carriage-return rewrite shown as its last state
  const ANSI = /\x1b(?:\[[0-9;?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
  const display = (text) => text.replace(ANSI, "").replace(/\r\n/g, "\n").split("\n")
    .map((line) => line.slice(line.lastIndexOf("\r") + 1)).join("\n");
  let shown = Number(log.dataset.seen || 0);
  let index = 0;
  const source = new EventSource(log.dataset.stream);
  source.onopen = () => { index = 0; };
  source.onmessage = (event) => {
    if (event.data === "END_OF_LOG") {
      source.close();
      setTimeout(() => window.location.reload(), 500);
      return;
    }
    index += 1;
    if (index <= shown) return;
    shown = index;
    const entry = JSON.parse(event.data);
    const span = document.createElement("span");
    span.className = entry.stream_name === "stderr" ? "stderr" : "stdout";
    span.textContent = display(String(entry.data));
    log.appendChild(span);
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {  // the run ended between the page and the stream
      setTimeout(() => window.location.reload(), 2000);
    }
  };
})();
