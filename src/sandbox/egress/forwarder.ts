/**
 * The forwarder that runs inside a network-less sandbox: it listens on
 * 127.0.0.1:PORT in the sandbox's own network namespace and pipes each
 * connection to the egress proxy's unix socket (bound into the sandbox). It
 * binds, detaches (double fork, so it is reaped by the sandbox's init and dies
 * with the sandbox), then execs the command. Python 3 from the image; it
 * imports nothing from the host.
 *
 * argv: fwd.py PORT SOCKET -- COMMAND...
 */
export const FORWARDER_PY = String.raw`
import os, socket, sys, threading
port, sock_path = int(sys.argv[1]), sys.argv[2]
cmd = sys.argv[4:]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    bound = True
except OSError:
    bound = False  # another process of this sandbox serves the port already
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
def serve():
    while True:
        c, _ = srv.accept()
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            u.connect(sock_path)
        except OSError:
            c.close()
            continue
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()
if bound:
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            for fd in (0, 1, 2):
                try:
                    os.close(fd)
                except OSError:
                    pass
            serve()
        os._exit(0)
    os.wait()
    srv.close()
os.execvp(cmd[0], cmd)
`;
