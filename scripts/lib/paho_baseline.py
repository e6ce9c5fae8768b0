"""The Python baseline of scripts/bench: what a short script does with the same backlog.

paho-mqtt >= 2 with manual_ack=True (the PUBACK leaves only on ack()), json.loads, one executemany
into a readings table with the same unique key as vitalsd's and a (patient, time) index, one
upsert per breach (glucose < 70 or >= 250 mg/dL), synchronous=FULL, commit, then ack the batch.

Usage: paho_baseline.py session PORT CLIENT_ID          (create the persistent session, then leave)
       paho_baseline.py drain PORT CLIENT_ID DB COUNT BATCH   (drain COUNT messages; prints msg/s)
"""
import json
import sqlite3
import sys
import time

import paho.mqtt.client as mqtt


def client(client_id, port):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=True)
    c.max_inflight_messages_set(5000)
    c.connect("127.0.0.1", port, keepalive=60)
    return c


def session(port, client_id):
    c = client(client_id, port)
    done = []
    c.on_subscribe = lambda *a: done.append(1)
    c.subscribe("devices/+/readings", qos=1)
    while not done:
        c.loop(timeout=0.1)
    c.disconnect()


def drain(port, client_id, path, count, batch_size):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("""CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,
                  patient_id TEXT NOT NULL, loinc TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL,
                  measured_at TEXT NOT NULL, UNIQUE (device_id, loinc, measured_at))""")
    db.execute("CREATE INDEX IF NOT EXISTS readings_patient_time ON readings(patient_id, measured_at)")
    db.execute("""CREATE TABLE IF NOT EXISTS alerts (patient_id TEXT NOT NULL, condition TEXT NOT NULL,
                  occurrences INTEGER NOT NULL, PRIMARY KEY (patient_id, condition))""")
    pending = []
    c = client(client_id, port)
    c.on_message = lambda cl, userdata, m: pending.append(m)
    c.subscribe("devices/+/readings", qos=1)
    stored = 0
    start = None
    while stored < count:
        c.loop(timeout=0.05)
        if start is None and pending:
            start = time.time()
        # Read what the socket has, up to a batch, then store and acknowledge it.
        if pending:
            while len(pending) < batch_size:
                before = len(pending)
                c.loop(timeout=0.001)
                if len(pending) == before:
                    break
            batch, pending = pending[:batch_size], pending[batch_size:]
            rows, breaches = [], []
            for m in batch:
                r = json.loads(m.payload)
                device = m.topic.split("/")[1]
                patient = device.replace("-d", "-p", 1)
                rows.append((device, patient, "41653-7", r["value"], r["unit"], r["measured_at"]))
                if r["value"] < 70 or r["value"] >= 250:
                    breaches.append((patient, "glucose low" if r["value"] < 70 else "glucose high"))
            db.execute("BEGIN IMMEDIATE")
            db.executemany("""INSERT INTO readings(device_id, patient_id, loinc, value, unit, measured_at)
                              VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING""", rows)
            for b in breaches:
                db.execute("""INSERT INTO alerts(patient_id, condition, occurrences) VALUES (?, ?, 1)
                              ON CONFLICT DO UPDATE SET occurrences = occurrences + 1""", b)
            db.execute("COMMIT")
            for m in batch:
                c.ack(m.mid, m.qos)
            stored += len(batch)
    end = time.time()
    c.loop(timeout=0.1)
    c.disconnect()
    print(int(count / (end - start)))


if __name__ == "__main__":
    if sys.argv[1] == "session":
        session(int(sys.argv[2]), sys.argv[3])
    else:
        drain(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
