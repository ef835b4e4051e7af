package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the dashboard: one page, a script and a style sheet, all
// served from the binary so the dashboard works offline and never loads
// anything from another origin.
//
//go:embed web
var web embed.FS

// dashboard serves the embedded assets. The page itself is public (it holds
// no data); its API calls need the token. Opening /?token=TOKEN stores the
// token in an HttpOnly cookie, because a browser's EventSource cannot send
// an Authorization header.
func (s *Server) dashboard() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := r.URL.Query().Get("token"); tok != "" && s.cfg.Token != "" && r.URL.Path == "/" {
			r2 := r.Clone(r.Context())
			r2.Header.Set("Authorization", "Bearer "+tok)
			if !s.authorized(r2) {
				http.Error(w, "wrong token", http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
