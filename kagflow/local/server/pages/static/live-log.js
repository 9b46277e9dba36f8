// The live log of a running kernel version: the server's log stream (what `kaggle kernels logs --follow`
// reads), appended to the log the page already shows. The stream replays from the first line on every
// (re)connection, so lines already shown are skipped; at the end the page reloads with the output.
"use strict";
(function () {
  const log = document.getElementById("log");
  if (!log || !log.dataset.stream) return;
  let shown = Number(log.dataset.seen || 0);
  let index = 0;
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;
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
    const follow = atBottom();
    const span = document.createElement("span");
    span.className = entry.stream_name === "stderr" ? "stderr" : "stdout";
    span.textContent = String(entry.data);
    log.appendChild(span);
    if (follow) log.scrollTop = log.scrollHeight;
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {  // the run ended between the page and the stream
      setTimeout(() => window.location.reload(), 2000);
    }
  };
})();
