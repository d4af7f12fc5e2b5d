"""A throwaway PostgreSQL for scripts (chaos, bench): initdb into a temporary folder, a server on a
free port of 127.0.0.1 with trust authentication, stopped and removed by stop(). PostgreSQL refuses
to run as root: as root the server runs as the `postgres` user (Debian's package makes it) on a
folder that user owns. `scripts/setup` installs the server."""
import glob, os, pwd, shutil, socket, subprocess, tempfile, time


def bin_dir():
    if os.environ.get("CAIRN_PG_BIN"):
        return os.environ["CAIRN_PG_BIN"]
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise SystemExit("no PostgreSQL server binaries (scripts/setup installs them: apt install postgresql)")
    return os.path.dirname(found[-1])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PostgresServer:
    def __init__(self, database="cairn", fsync=True, statements=False):
        """statements: load pg_stat_statements, so round trips can be counted per database."""
        self.bin = bin_dir()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cairn-pg-")
        self.prefix = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"]
        data = os.path.join(self.dir, "data")
        self._run(["initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        self.log = open(os.path.join(self.dir, "server.log"), "w") if os.geteuid() != 0 else subprocess.DEVNULL
        self.process = subprocess.Popen(self.prefix + [os.path.join(self.bin, "postgres"), "-D", data, "-p", str(self.port),
                                        "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", f"fsync={'on' if fsync else 'off'}",
                                        "-c", "max_connections=200"]
                                        + (["-c", "shared_preload_libraries=pg_stat_statements", "-c", "pg_stat_statements.track=all"] if statements else []),
                                        stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode != 0:
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise SystemExit(f"PostgreSQL did not start on port {self.port}")
            time.sleep(0.1)
        self.psql(f'CREATE DATABASE "{database}"', database="postgres")
        self.database = database

    def _run(self, args):
        r = subprocess.run(self.prefix + [os.path.join(self.bin, args[0])] + args[1:], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{args[0]} failed: {r.stderr.strip()}")

    def create(self, database):
        """A new empty database; its URL."""
        self.psql(f'CREATE DATABASE "{database}"', database="postgres")
        return self.url(database)

    def url(self, database=None):
        return f"postgres://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def psql(self, sql, database=None):
        r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-d", database or self.database, "-c", sql], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(3)  # SIGQUIT: immediate shutdown, backends included
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
