package tests

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// agentProcess is one sluice child process (`sluice run`, or another command
// such as `sluice fleet serve`).
type agentProcess struct {
	cmd     *exec.Cmd
	log     *syncBuffer   // its stderr, for failure messages
	started chan struct{} // closed once it logs that every stage runs
	done    chan struct{} // closed once its stderr is closed (it exited)
}

// procOptions are the optional parts of startProcess.
type procOptions struct {
	Dir     string // working directory; "" is the test's
	LogFile string // when set, stderr is appended to this file as well
	// Watch, when set, is matched against each stderr line; the first
	// submatch of the first line it matches is sent on Found.
	Watch *regexp.Regexp
	Found chan<- string
}

// startAgent runs `bin run -c cfg`. Its stderr is kept in log and, when
// logFile is not empty, appended to that file as well.
func startAgent(t *testing.T, bin, cfg, logFile string) *agentProcess {
	t.Helper()
	return startProcess(t, bin, procOptions{LogFile: logFile}, "run", "-c", cfg)
}

// startProcess runs bin with args (any sluice command). Its stderr is kept
// in log; started is closed when an agent logs that every stage runs, done
// once stderr is closed. The caller stops and waits for the process.
func startProcess(t *testing.T, bin string, opts procOptions, args ...string) *agentProcess {
	t.Helper()
	a := &agentProcess{cmd: exec.Command(bin, args...), log: &syncBuffer{}, started: make(chan struct{}), done: make(chan struct{})}
	a.cmd.Dir = opts.Dir
	pipe, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var file *os.File
	if opts.LogFile != "" {
		if file, err = os.OpenFile(opts.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
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
		started, found := false, opts.Watch == nil
		for sc.Scan() {
			a.log.write(sc.Text() + "\n")
			if file != nil {
				file.WriteString(sc.Text() + "\n")
			}
			if !started && strings.Contains(sc.Text(), `msg="agent started"`) {
				started = true
				close(a.started)
			}
			if !found {
				if m := opts.Watch.FindStringSubmatch(sc.Text()); m != nil {
					found = true
					opts.Found <- m[1]
				}
			}
		}
	}()
	return a
}
