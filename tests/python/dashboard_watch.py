"""Watch `sintra ui` in a real browser (Debian's headless Chromium, driven over the Chrome
DevTools Protocol on a pipe: no extra package) while a run happens.

    python3 dashboard_watch.py BASE_URL SCREENSHOT_DIR

1. Opens BASE_URL/ (the runs list), marks the window, prints `ready` on stdout.
2. Waits for a run's row to appear (the test starts a run after `ready`): the mark must still
   be there, i.e. the row came without a reload.
3. Opens that run's page, marks it, counts its experiment rows, and waits until the run is no
   longer `running`, noting every row count seen; the mark must survive again.
4. Ticks two experiments and submits the compare form; checks the side-by-side page.
Screenshots of the three pages go to SCREENSHOT_DIR; the last stdout line is a JSON summary.
"""

import base64
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time


class Cdp:
    """Chrome DevTools Protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-framed)."""

    def __init__(self, profile):
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def fds():
            # Move both ends out of the way first: either may already be fd 3 or 4.
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                "--user-data-dir=" + profile,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=fds,
            # Its own process group: closing kills the renderer and utility processes too,
            # which otherwise still write into the profile while it is being removed.
            start_new_session=True,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def call(self, method, params=None, session=True, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" not in self.buf:
                if time.time() > deadline:
                    raise TimeoutError(method)
                chunk = os.read(self.from_chrome, 1 << 16)
                if not chunk:
                    raise EOFError("chromium closed the pipe during " + method)
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def open(self, url, path):
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
        )["sessionId"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1400, "height": 1800, "deviceScaleFactor": 1, "mobile": False},
        )
        # The new tab is about:blank (complete) before it commits the URL: wait for the path.
        self.loaded(path)

    def js(self, expr):
        r = self.call(
            "Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def loaded(self, path=None, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                ok = self.js(
                    "document.readyState === 'complete'"
                    + (f" && location.pathname === {json.dumps(path)}" if path else "")
                )
                if ok:
                    return
            except RuntimeError:
                pass  # the page is between documents
            time.sleep(0.1)
        raise TimeoutError(f"page {path} did not load")

    def navigate(self, url, path):
        self.call("Page.navigate", {"url": url})
        self.loaded(path)

    def shot(self, file):
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        with open(file, "wb") as f:
            f.write(base64.b64decode(data["data"]))

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        # Then wait for the group's other members (reparented when the browser died) to be
        # gone or dead (a zombie writes nothing).
        deadline = time.time() + 30
        while live_members(self.proc.pid):
            if time.time() > deadline:
                raise TimeoutError("chromium's processes did not exit")
            time.sleep(0.05)


def live_members(pgid):
    """The processes of group `pgid` that still run (not zombies), from /proc."""
    live = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.append(int(pid))
    return live


def wait_for(what, f, timeout, every=0.25):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError(what)


def main():
    base, shots = sys.argv[1].rstrip("/"), sys.argv[2]
    os.makedirs(shots, exist_ok=True)
    out = {}
    with tempfile.TemporaryDirectory() as profile:
        b = Cdp(profile)
        try:
            b.open(base + "/", "/")
            b.js("window.__sintraMark = 1")
            out["index_rows_at_open"] = b.js("document.querySelectorAll('#live-runs tr.run').length")
            out["index_text_at_open"] = b.js("document.getElementById('live-runs').innerText")
            print("ready", flush=True)
            run = wait_for(
                "a run's row on the runs page",
                lambda: b.js(
                    "(document.querySelector('#live-runs tr.run') || {dataset: {}}).dataset.run || ''"
                ),
                600,
            )
            out["run"] = run
            out["index_mark_kept"] = b.js("window.__sintraMark === 1")
            out["index_updates"] = int(b.js("document.body.dataset.updates || '0'"))
            b.shot(os.path.join(shots, "dashboard-runs.png"))

            b.navigate(f"{base}/runs/{run}", f"/runs/{run}")
            b.js("window.__sintraMark = 2")
            count = "document.querySelectorAll('#live-rows tr.experiment').length"
            status = "(document.getElementById('run-status') || {}).textContent || ''"
            out["run_rows_at_open"] = b.js(count)
            out["run_status_at_open"] = b.js(status)
            seen = [out["run_rows_at_open"]]

            def finished():
                n = b.js(count)
                if n != seen[-1]:
                    seen.append(n)
                return b.js(status) not in ("", "running")

            wait_for("the run to finish on its page", finished, 1200, every=0.5)
            # The last row may land with the status; let the page catch up.
            time.sleep(2.5)
            finished()
            out["run_rows_seen"] = seen
            out["run_status_final"] = b.js(status)
            out["run_mark_kept"] = b.js("window.__sintraMark === 2")
            out["run_updates"] = int(b.js("document.body.dataset.updates || '0'"))
            out["run_plots"] = b.js(
                "Array.from(document.querySelectorAll('#live-plots figure'), f => f.id + ':' + (f.querySelector('svg') ? 'svg' : 'none'))"
            )
            out["run_iterations"] = b.js(
                "Array.from(document.querySelectorAll('#live-rows tr.experiment'), r => Number(r.dataset.iteration))"
            )
            b.shot(os.path.join(shots, "dashboard-run.png"))

            b.js(
                "Array.from(document.querySelectorAll('input[name=e]')).slice(0, 2).forEach(i => { i.checked = true; });"
                "document.querySelector('form button').click(); true"
            )
            b.loaded("/compare")
            out["compare_columns"] = b.js("document.querySelectorAll('#compare thead th').length")
            out["compare_sides"] = b.js(
                "Array.from(document.querySelectorAll('section.side'), s => Number(s.dataset.iteration) + ':' + (s.querySelector('svg') ? 'svg' : 'none'))"
            )
            out["compare_differ"] = b.js("(document.getElementById('differ-title') || {}).textContent || ''")
            b.shot(os.path.join(shots, "dashboard-compare.png"))
        finally:
            b.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
