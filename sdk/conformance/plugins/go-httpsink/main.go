// Command httpsink is the Go version of the conformance suite's HTTP sink
// (sdk/conformance/README.md): it posts each batch's bodies, one per line.
package main

import (
	"strconv"

	sluice "github.com/sluicehq/sluice/sdk/go"
)

type httpSink struct {
	url  string
	body []byte
}

func (s *httpSink) Init(cfg *sluice.Config) error {
	s.url = cfg.String("url", "")
	return nil
}

func (s *httpSink) Write(e *sluice.Event) error {
	s.body = append(append(s.body, e.Body...), '\n')
	return nil
}

func (s *httpSink) Flush() error {
	defer func() { s.body = s.body[:0] }()
	resp, err := sluice.HTTPDo(&sluice.HTTPRequest{
		Method:  "POST",
		URL:     s.url,
		Headers: []sluice.Header{{Name: "Content-Type", Value: "text/plain"}},
		Body:    s.body,
	})
	if err != nil {
		return err
	}
	if resp.Status >= 500 {
		return sluice.Retry("http status " + strconv.Itoa(resp.Status))
	}
	if resp.Status >= 300 {
		return errorString("http status " + strconv.Itoa(resp.Status))
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func init() { sluice.Register(&httpSink{}) }

func main() {}
