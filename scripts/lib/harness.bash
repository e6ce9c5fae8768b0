# Shared by scripts/bench and scripts/faults: a loopback broker, a daemon configuration, enrollment
# and canonical backlog files. Source it after `cd` to the repository root; set `state` (a fresh
# directory) first. Uses bash, awk, sqlite3 and the mosquitto clients only.

pids=()
harness_cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

# build_vitalsd BUILD: builds the daemon (and the bench tool) and sets $vitalsd and $bin.
build_vitalsd() {
    swift build -c "$1" --product vitalsd
    bin="$(swift build -c "$1" --show-bin-path)"
    vitalsd="$bin/vitalsd"
}

# free_port: a TCP port nobody listens on, from a random start.
free_port() {
    local p=$((20000 + RANDOM % 20000))
    while (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
    echo $p
}

# start_broker DIR PORT [bench]: mosquitto from Config/mosquitto.conf on PORT with persistence in DIR;
# sets $broker. The same DIR and PORT restart it with its queued messages. With `bench`, the broker
# saves its store every 30 minutes instead of after every 100 changes: a save rewrites the whole store,
# so with backlogs of hundreds of thousands of messages the shipped setting makes queuing and draining
# quadratic in the broker, for every contender alike (BENCHMARKS.md).
start_broker() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    chmod 0777 "$dir"   # mosquitto started as root drops to its own user
    sed -e "s/^listener 1883 127.0.0.1/listener $port 127.0.0.1/" -e "s#^persistence_location .*#persistence_location $dir/#" \
        Config/mosquitto.conf >"$dir/mosquitto.conf"
    if [[ ${3:-} == bench ]]; then
        sed -i -e 's/^autosave_on_changes .*/autosave_on_changes false/' -e 's/^autosave_interval .*/autosave_interval 1800/' \
            "$dir/mosquitto.conf"
    fi
    mosquitto -c "$dir/mosquitto.conf" 2>>"$dir/mosquitto.log" &
    broker=$!
    pids+=($broker)
    local _
    for _ in $(seq 100); do mosquitto_pub -h 127.0.0.1 -p "$port" -t harness/ping -n 2>/dev/null && return 0; sleep 0.1; done
    echo "broker did not start on port $port" >&2
    return 1
}

# write_config FILE PORT DB HTTP_PORT(0 = off) [LOG_LEVEL]: a daemon configuration.
write_config() {
    local http="enabled: false"
    [[ $4 != 0 ]] && http="port: $4"
    cat >"$1" <<YAML
mqtt:
  port: $2
  client_id: vitalsd-harness
  max_batch: 1000
database:
  path: $3
http:
  $http
log:
  level: ${5:-info}
YAML
}

# enroll CONFIG PATIENTS [PREFIX]: patients PREFIX-p1..N (program diabetes, default prefix bench), each
# with device PREFIX-dN.
enroll() {
    local csv prefix=${3:-bench}
    csv=$(mktemp "$state/enrollment.XXXXXX")
    awk -v n="$2" -v x="$prefix" 'BEGIN { print "patient_id,program,timezone,device_id,device_kind"
        for (i = 1; i <= n; i++) printf "%s-p%d,diabetes,America/Chicago,%s-d%d,glucometer\n", x, i, x, i }' >"$csv"
    "$vitalsd" import --config "$1" "$csv" --by bench >/dev/null
}

# backlog_csv FILE COUNT DEVICES DAYS_AGO [PREFIX]: COUNT glucose readings spread over devices
# PREFIX-d1..N (default bench), one second apart from DAYS_AGO days ago; about 5 % breach the
# diabetes thresholds (< 70 or >= 250 mg/dL).
backlog_csv() {
    local t0=$(( $(date +%s) - $4 * 86400 ))
    awk -v n="$2" -v p="$3" -v t0="$t0" -v x="${5:-bench}" 'BEGIN {
        srand(42)
        print "device_id,measured_at,type,value,unit"
        for (i = 0; i < n; i++) {
            d = i % p + 1
            v = 80 + int(rand() * 90)
            if (rand() < 0.05) v = (rand() < 0.5) ? 50 + int(rand() * 15) : 260 + int(rand() * 100)
            printf "%s-d%d,%s,glucose,%d,mg/dL\n", x, d, strftime("%Y-%m-%dT%H:%M:%SZ", t0 + i, 1), v
        }
    }' >"$1"
}

# create_session CONFIG LOG: runs the daemon until it has subscribed once more than LOG already
# records, so that the broker queues messages for its persistent session while it is stopped.
# Fails when it does not subscribe within 30 s.
create_session() {
    local before
    before=$(subscribes "$2")
    "$vitalsd" run --config "$1" 2>>"$2" &
    local d=$! ok=0
    wait_subscribed "$2" $((before + 1)) && ok=1
    kill -TERM "$d"
    wait "$d" || true
    ((ok))
}

# end_session PORT CLIENT_ID: a clean-session connection with CLIENT_ID, which makes the broker
# discard that client's persistent session and everything queued for it.
end_session() {
    mosquitto_sub -h 127.0.0.1 -p "$1" -i "$2" -t harness/none -W 1 >/dev/null 2>&1 || true
}

# subscribes LOG: how many times the daemon logged a completed SUBSCRIBE (text or JSON log format).
subscribes() { if [[ -f $1 ]]; then grep -cE '\] subscribed$|"message":"subscribed"' "$1" || true; else echo 0; fi; }

# wait_subscribed LOG N: waits until the daemon log holds N "subscribed" lines (30 s at most).
wait_subscribed() {
    local _
    for _ in $(seq 600); do
        (( $(subscribes "$1") >= $2 )) && return 0
        sleep 0.05
    done
    echo "daemon did not subscribe (log: $1)" >&2
    return 1
}

# readings DB [AFTER_ID]: how many readings DB holds, or how many after the row id AFTER_ID (a count
# of the new rows only: a count(*) of 10 million rows walks a whole index).
readings() { sqlite3 "$1" "SELECT count(*) FROM readings${2:+ WHERE id > $2}" 2>/dev/null || echo 0; }
# last_reading_id DB: the highest row id in readings, 0 when there is none.
last_reading_id() { sqlite3 "$1" "SELECT coalesce(max(id), 0) FROM readings" 2>/dev/null || echo 0; }
counter() { sqlite3 "$1" "SELECT value FROM counters WHERE name = '$2'" 2>/dev/null || echo 0; }

# wait_readings DB N SECONDS: until DB holds N readings, or SECONDS pass with no new reading.
wait_readings() {
    local last=-1 idle=0 n
    while :; do
        n=$(readings "$1")
        (( n >= $2 )) && return 0
        if (( n == last )); then idle=$((idle + 1)); else idle=0; last=$n; fi
        (( idle >= $3 * 10 )) && return 1
        sleep 0.1
    done
}

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }

# start_postgres DIR: a throw-away PostgreSQL cluster of Debian's newest version in DIR, on a free
# loopback port, with trust authentication and Debian's durability defaults (synchronous_commit on,
# fsync on); sets $pgport and $pgbin. As the postgres user when run as root (initdb refuses root).
# stop_postgres DIR stops it.
as_postgres() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_postgres() {
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    if [[ $EUID -eq 0 ]]; then mkdir -p "$1" && chown postgres: "$1"; else mkdir -p "$1"; fi
    as_postgres "$pgbin/initdb" -D "$1/data" -U postgres --auth=trust >"$1/initdb.log"
    pgport=$(free_port)
    as_postgres "$pgbin/pg_ctl" -D "$1/data" -l "$1/server.log" -w \
        -o "-p $pgport -k $1 -c listen_addresses=127.0.0.1" start >/dev/null
}
stop_postgres() { [[ -n ${pgbin:-} && -d $1/data ]] && as_postgres "$pgbin/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1 || true; }
# pg_sql DATABASE SQL: runs SQL, prints unaligned rows.
pg_sql() { as_postgres "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 -Atqc "$2" "$1"; }

# enroll_postgres DATABASE N PREFIX…: for each PREFIX, patients PREFIX-p1..N (diabetes, UTC), each
# with the glucometer PREFIX-dN bound to it since before any reading (backlog_csv's device ids).
enroll_postgres() {
    local database=$1 n=$2 prefixes
    shift 2
    prefixes=$(printf "'%s'," "$@")
    pg_sql "$database" "
        CREATE TEMPORARY TABLE enrolled AS
            SELECT s || '-p' || i AS patient, s || '-d' || i AS device FROM unnest(ARRAY[${prefixes%,}]) s, generate_series(1, $n) i;
        INSERT INTO patients (id, timezone, created_at) SELECT patient, 'UTC', 0 FROM enrolled;
        INSERT INTO patient_programs (patient_id, program) SELECT patient, 'diabetes' FROM enrolled;
        INSERT INTO devices (id, kind, patient_id, created_at) SELECT device, 'glucometer', patient, 0 FROM enrolled;
        INSERT INTO device_bindings (device_id, patient_id, created_at, created_by) SELECT device, patient, 0, 'harness' FROM enrolled;"
}

# write_node_config FILE NODE BROKER_PORT DATABASE_URL HTTP_PORT(0 = off) CLIENT_ID:TOPIC_LEVEL…: a node
# of a cluster on PostgreSQL, one session per CLIENT_ID with the filter devices/TOPIC_LEVEL/+/readings.
write_node_config() {
    local file=$1 node=$2 port=$3 url=$4 http=$5 session
    shift 5
    {
        printf 'mqtt:\n  port: %s\n  max_batch: 1000\ndatabase:\n  url: %s\ncluster:\n  node_name: %s\n  sessions:\n' "$port" "$url" "$node"
        for session in "$@"; do
            printf '    - client_id: %s\n      topics: [devices/%s/+/readings]\n' "${session%%:*}" "${session#*:}"
        done
        if [[ $http == 0 ]]; then printf 'http:\n  enabled: false\n'; else printf 'http:\n  port: %s\n' "$http"; fi
        printf 'log:\n  level: info\n'
    } >"$file"
}
