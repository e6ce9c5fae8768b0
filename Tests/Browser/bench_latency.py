"""Reading to visible worklist row, measured in a real browser, for scripts/bench-workspace.

Signs in, opens the Unassigned tab, then for each device given publishes a critical BP reading through
the broker and times how long the new row takes to appear in the open page (live update, no reload).
Prints one line: `latency_p50_s=… latency_max_s=… samples=N`.

Usage: python bench_latency.py BASE_URL USERNAME PASSWORD MQTT_PORT DEVICE…
"""

import subprocess
import sys
import time
from datetime import datetime, timezone

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from workspace_test import browser, iso

base, username, password, port, devices = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
d = browser()
try:
    d.get(base + "/signin")
    d.find_element(By.ID, "username").send_keys(username)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "sign-in").click()
    WebDriverWait(d, 60).until(lambda d: "/worklist" in d.current_url)
    d.get(base + "/worklist?tab=unassigned")
    script = "return document.querySelectorAll('tr[data-task]').length"
    samples = []
    for device in devices:
        before = d.execute_script(script)
        payload = ('{"measured_at":"%s","readings":[{"type":"systolic_bp","value":186,"unit":"mmHg"},'
                   '{"type":"diastolic_bp","value":124,"unit":"mmHg"}]}') % iso(datetime.now(timezone.utc))
        start = time.monotonic()
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", f"devices/{device}/readings",
                        "-m", payload], check=True, timeout=30)
        WebDriverWait(d, 60, poll_frequency=0.01).until(lambda d: d.execute_script(script) > before)
        samples.append(time.monotonic() - start)
    samples.sort()
    print(f"latency_p50_s={samples[len(samples) // 2]:.2f} latency_max_s={samples[-1]:.2f} samples={len(samples)}")
finally:
    d.quit()
