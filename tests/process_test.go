package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/orders"
)

// writeOrderLog writes lines [0, total) of g to dir/logs/orders.log in
// chunks of 2,500, rotating by rename + create (to orders.log.NN) every
// rotateEvery lines, and pauses between chunks so that the log grows while
// the agents under test run and die. written holds the lines written so far.
func writeOrderLog(dir string, g *orders.Generator, total, rotateEvery int, pause time.Duration, written *atomic.Int64) error {
	logPath := filepath.Join(dir, "logs", "orders.log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	var buf []byte
	for i := 0; i < total; {
		buf = buf[:0]
		for k := 0; k < 2500 && i < total; k++ {
			buf = g.AppendLine(buf, uint64(i))
			i++
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		written.Store(int64(i))
		if i%rotateEvery == 0 && i < total {
			f.Close()
			if err := os.Rename(logPath, fmt.Sprintf("%s.%02d", logPath, i/rotateEvery)); err != nil {
				return err
			}
			if f, err = os.Create(logPath); err != nil {
				return err
			}
		}
		time.Sleep(pause) // pacing the writer, not synchronisation
	}
	return f.Close()
}

// agentProcess is one `sluice run` child process.
type agentProcess struct {
	cmd     *exec.Cmd
	log     *syncBuffer   // its stderr, for failure messages
	started chan struct{} // closed once it logs that every stage runs
	done    chan struct{} // closed once its stderr is closed (it exited)
}

// startAgent runs `bin run -c cfg`. Its stderr is kept in log and, when
// logFile is not empty, appended to that file as well.
func startAgent(t *testing.T, bin, cfg, logFile string) *agentProcess {
	t.Helper()
	a := &agentProcess{cmd: exec.Command(bin, "run", "-c", cfg), log: &syncBuffer{}, started: make(chan struct{}), done: make(chan struct{})}
	pipe, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var file *os.File
	if logFile != "" {
		if file, err = os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(a.done)
		if file != nil {
			defer file.Close()
		}
		sc := bufio.NewScanner(pipe)
		once := false
		for sc.Scan() {
			a.log.write(sc.Text() + "\n")
			if file != nil {
				file.WriteString(sc.Text() + "\n")
			}
			if !once && strings.Contains(sc.Text(), `msg="agent started"`) {
				once = true
				close(a.started)
			}
		}
	}()
	return a
}
