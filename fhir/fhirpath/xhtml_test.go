package fhirpath

import "testing"

func TestSafeXHTML(t *testing.T) {
	for _, tc := range []struct {
		div  string
		safe bool
	}{
		{`<div xmlns="http://www.w3.org/1999/xhtml">Hello</div>`, true},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><p class='a' style="color: red">x &gt; y</p><br/><img src="#pic" alt="a > b"/></div>`, true},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><!-- <script> -->text</div>`, true},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><img src="x.png"/></div>`, true},
		{`<div xmlns="http://www.w3.org/1999/xhtml">  </div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>x</div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><SCRIPT>alert(1)</SCRIPT>x</div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">hi</p></div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><p ONMOUSEOVER=x>hi</p></div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><a href=" java&#x73;cript:x()">hi</a></div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="http://x"></iframe>x</div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><form>x</form></div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><p title="unclosed>x</p></div>`, false},
		{`<div xmlns="http://www.w3.org/1999/xhtml"><![CDATA[x]]></div>`, false},
	} {
		if got := SafeXHTML(tc.div); got != tc.safe {
			t.Errorf("SafeXHTML(%s) = %v, want %v", tc.div, got, tc.safe)
		}
	}
}
