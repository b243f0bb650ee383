// Renders a Modelfile's TEMPLATE the way Ollama does (issue #19's test): Go's text/template
// over the request's messages, with the Modelfile's SYSTEM put first when the conversation has
// no system message of its own. Usage: go run modelfile_render.go MODELFILE MESSAGES.json
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// quoted returns the """...""" (or single-line) value of the first `KEY ` directive.
func quoted(modelfile, key string) (string, bool) {
	at := strings.Index(modelfile, "\n"+key+" ")
	if at < 0 {
		return "", false
	}
	rest := modelfile[at+len(key)+2:]
	if strings.HasPrefix(rest, `"""`) {
		end := strings.Index(rest[3:], `"""`)
		if end < 0 {
			fmt.Fprintln(os.Stderr, key, "is not closed")
			os.Exit(2)
		}
		return rest[3 : 3+end], true
	}
	return strings.SplitN(rest, "\n", 2)[0], true
}

func main() {
	mf, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		panic(err)
	}
	var msgs []Message
	if err := json.Unmarshal(raw, &msgs); err != nil {
		panic(err)
	}
	text := "\n" + string(mf)
	tmpl, ok := quoted(text, "TEMPLATE")
	if !ok {
		fmt.Fprintln(os.Stderr, "no TEMPLATE")
		os.Exit(2)
	}
	if system, ok := quoted(text, "SYSTEM"); ok {
		has := false
		for _, m := range msgs {
			has = has || m.Role == "system"
		}
		if !has {
			msgs = append([]Message{{Role: "system", Content: system}}, msgs...)
		}
	}
	t, err := template.New("modelfile").Parse(tmpl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "template:", err)
		os.Exit(2)
	}
	var b strings.Builder
	if err := t.Execute(&b, map[string]any{"Messages": msgs}); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(2)
	}
	fmt.Print(b.String())
}
