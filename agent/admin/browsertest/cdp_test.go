package browsertest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// chromium is a headless Debian Chromium driven over the DevTools protocol
// (one websocket to the browser; one page session in flat mode).
type chromium struct {
	cmd     *exec.Cmd
	ws      *websocket.Conn
	session string

	mu       sync.Mutex
	nextID   int64
	pending  map[int64]chan cdpMessage
	problems []string // uncaught exceptions and console errors of the page
	readErr  error
	done     chan struct{}
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startChromium starts the browser with the flags these machines need and
// a fresh profile, and opens one page of width×height.
func startChromium(t *testing.T, ctx context.Context, width, height int) *chromium {
	t.Helper()
	// Chromium's helper processes (zygote, renderers) outlive a kill of the
	// main process and keep writing into the profile, so the browser gets a
	// process group of its own, killed as a whole, and its own profile
	// directory, removed once nothing writes there any more.
	profile, err := os.MkdirTemp("", "sluice-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "chromium",
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir="+profile, "--remote-debugging-port=0",
		"--remote-allow-origins=http://127.0.0.1", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium (scripts/test installs the Debian package): %v", err)
	}
	c := &chromium{cmd: cmd, pending: map[int64]chan cdpMessage{}, done: make(chan struct{})}
	t.Cleanup(func() {
		if c.ws != nil {
			c.ws.Close()
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		// Helpers die asynchronously; retry until the profile can go.
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := os.RemoveAll(profile)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Logf("chromium profile %s left behind: %v", profile, err)
				return
			}
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			time.Sleep(50 * time.Millisecond) // polling the filesystem, which other processes release
		}
	})
	// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
	sc := bufio.NewScanner(stderr)
	var wsURL string
	var log []string
	for sc.Scan() {
		line := sc.Text()
		if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
			wsURL = u
			break
		}
		log = append(log, line)
	}
	if wsURL == "" {
		t.Fatalf("chromium exited without a DevTools address:\n%s", strings.Join(log, "\n"))
	}
	go io.Copy(io.Discard, stderr) // keep the pipe drained
	cfg, err := websocket.NewConfig(wsURL, "http://127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if c.ws, err = websocket.DialConfig(cfg); err != nil {
		t.Fatalf("connect to %s: %v", wsURL, err)
	}
	c.ws.MaxPayloadBytes = 64 << 20 // screenshots
	go c.readLoop()

	var target struct{ TargetID string }
	c.call(t, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var attached struct{ SessionID string }
	c.call(t, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached)
	c.session = attached.SessionID
	c.call(t, c.session, "Runtime.enable", nil, nil)
	c.call(t, c.session, "Log.enable", nil, nil)
	c.call(t, c.session, "Page.enable", nil, nil)
	c.call(t, c.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	return c
}

func (c *chromium) readLoop() {
	defer close(c.done)
	for {
		var m cdpMessage
		if err := websocket.JSON.Receive(c.ws, &m); err != nil {
			c.mu.Lock()
			c.readErr = err
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.pending[m.ID]; ok {
				ch <- m
				delete(c.pending, m.ID)
			}
		} else {
			c.noteEvent(m)
		}
		c.mu.Unlock()
	}
}

// noteEvent keeps the page's script errors, which fail the test.
func (c *chromium) noteEvent(m cdpMessage) {
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string
				Exception struct{ Description string }
			}
		}
		_ = json.Unmarshal(m.Params, &p)
		c.problems = append(c.problems, "exception: "+p.ExceptionDetails.Text+" "+p.ExceptionDetails.Exception.Description)
	case "Log.entryAdded":
		var p struct {
			Entry struct{ Level, Text, URL string }
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Entry.Level == "error" {
			c.problems = append(c.problems, "console: "+p.Entry.Text+" "+p.Entry.URL)
		}
	}
}

// call sends one command and decodes its result into out (if not nil).
func (c *chromium) call(t *testing.T, session, method string, params any, out any) {
	t.Helper()
	if err := c.try(session, method, params, out); err != nil {
		t.Fatal(err)
	}
}

func (c *chromium) try(session, method string, params any, out any) error {
	if params == nil {
		params = map[string]any{}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	ch := make(chan cdpMessage, 1)
	c.mu.Lock()
	if c.readErr != nil {
		c.mu.Unlock()
		return fmt.Errorf("%s: connection closed: %w", method, c.readErr)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	if err := websocket.JSON.Send(c.ws, cdpMessage{ID: id, Method: method, Params: raw, SessionID: session}); err != nil {
		return fmt.Errorf("%s: send: %w", method, err)
	}
	m, ok := <-ch
	if !ok {
		return fmt.Errorf("%s: connection closed before the reply", method)
	}
	if m.Error != nil {
		return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
	}
	if out != nil {
		return json.Unmarshal(m.Result, out)
	}
	return nil
}

// navigate opens url in the page.
func (c *chromium) navigate(t *testing.T, url string) {
	t.Helper()
	var r struct{ ErrorText string }
	c.call(t, c.session, "Page.navigate", map[string]any{"url": url}, &r)
	if r.ErrorText != "" {
		t.Fatalf("navigate to %s: %s", url, r.ErrorText)
	}
}

// eval evaluates a JavaScript expression that returns a JSON string and
// decodes it into out.
func (c *chromium) eval(expr string, out any) error {
	var r struct {
		Result struct {
			Type  string
			Value json.RawMessage
		}
		ExceptionDetails *struct{ Text string }
	}
	if err := c.try(c.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return errors.New("evaluate: " + r.ExceptionDetails.Text)
	}
	var s string
	if err := json.Unmarshal(r.Result.Value, &s); err != nil {
		return fmt.Errorf("evaluate: result %s is not a JSON string", r.Result.Value)
	}
	return json.Unmarshal([]byte(s), out)
}

// screenshot returns a PNG of the whole page.
func (c *chromium) screenshot(t *testing.T) []byte {
	t.Helper()
	var r struct{ Data string }
	c.call(t, c.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	return png
}

func (c *chromium) pageProblems() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.problems...)
}
