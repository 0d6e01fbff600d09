package yamlx

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDescribe(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("{a: [1], b: ~, c: x}"), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	for n, want := range map[*yaml.Node]string{m: "a mapping", m.Content[1]: "a list", m.Content[3]: "null", m.Content[5]: `"x"`, {}: "nothing"} {
		if got := Describe(n); got != want {
			t.Errorf("Describe = %s, want %s", got, want)
		}
	}
}

func TestSyntaxFault(t *testing.T) {
	// yaml.v3 names line 1, where the unclosed flow list began.
	data := []byte("a: [1,\n  2,\n  b: c\n")
	var n yaml.Node
	err := yaml.Unmarshal(data, &n)
	if err == nil {
		t.Fatal("no error")
	}
	line, msg := SyntaxFault(data, err)
	if line != 3 || strings.HasPrefix(msg, "yaml:") {
		t.Errorf("SyntaxFault = %d, %q; want line 3 and the message without its prefix", line, msg)
	}
}

func TestAliasesBudget(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("a: &x 1\nb: *x\n"), &doc); err != nil {
		t.Fatal(err)
	}
	alias := doc.Content[0].Content[3]
	a := NewAliases(2)
	if n, f := a.Deref(alias); n == nil || n.Value != "1" || f != nil {
		t.Fatalf("first Deref = %v, %v", n, f)
	}
	n, f := a.Deref(alias)
	if n != nil || f == nil || !f.Spent || f.Msg != "yaml: too many nodes through aliases (limit 2)" {
		t.Fatalf("Deref at the limit = %v, %+v", n, f)
	}
	if n, f := a.Deref(alias); n != nil || f != nil {
		t.Fatalf("Deref past the limit = %v, %+v; want nil and no second report", n, f)
	}
	if n, f := a.Deref(nil); n != nil || f != nil {
		t.Fatalf("Deref(nil) = %v, %v", n, f)
	}
}

func TestAliasChain(t *testing.T) {
	loop := &yaml.Node{Kind: yaml.AliasNode}
	loop.Alias = loop
	n, f := NewAliases(10).Deref(loop)
	if n != nil || f == nil || f.Spent || f.Msg != "yaml: alias chain too long" || f.Node != loop {
		t.Fatalf("Deref(loop) = %v, %+v", n, f)
	}
}
