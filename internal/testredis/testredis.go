// Package testredis starts a real redis-server (Debian's package) for tests,
// on a free loopback port, and stops it when the test ends.
package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one running redis-server.
type Server struct {
	Addr string // host:port
	Dir  string // working directory (where an AOF lives, if enabled)
	port int
	args []string
	cmd  *exec.Cmd
	t    testing.TB
}

// Start runs redis-server on a free loopback port with persistence off,
// plus any extra arguments (e.g. "--appendonly", "yes"), and registers its
// stop with t.Cleanup. It fails the test if redis-server is not installed
// (scripts/test installs it).
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return start(t, "--port", extra)
}

// StartTLS is Start with TLS only: the port speaks TLS with the server
// certificate certFile/keyFile (PEM), and clients need no certificate.
func StartTLS(t testing.TB, certFile, keyFile string, extra ...string) *Server {
	t.Helper()
	return start(t, "--tls-port", append([]string{"--port", "0", "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", certFile, "--tls-auth-clients", "no"}, extra...))
}

func start(t testing.TB, portFlag string, extra []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (Debian package redis-server; scripts/test installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: t.TempDir(), port: port, t: t}
	s.args = append([]string{portFlag, strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.Dir, "--daemonize", "no"}, extra...)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command("redis-server", s.args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	// redis-server logs "Ready to accept connections" once it listens.
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var log []string
		for sc.Scan() {
			line := sc.Text()
			log = append(log, line)
			if strings.Contains(line, "Ready to accept connections") {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
		}
		ready <- fmt.Errorf("redis-server exited before it was ready:\n%s", strings.Join(log, "\n"))
	}()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Wait()
			s.t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		s.t.Fatal("redis-server not ready after 20s")
	}
	s.cmd = cmd
}

// Stop kills the server (SIGKILL: nothing is saved that the server was not
// told to persist). Safe twice.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port and directory (an AOF
// written there is loaded).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
