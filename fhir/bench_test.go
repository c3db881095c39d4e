package fhir

import (
	"os"
	"testing"
	"time"
)

func benchBody(b *testing.B) []byte {
	body, err := os.ReadFile("testdata/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkValidatePatient(b *testing.B) {
	body := benchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, issues, err := Validate(body); err != nil || len(issues) > 0 {
			b.Fatal(err, issues)
		}
	}
}

func BenchmarkStampPatient(b *testing.B) {
	body := benchBody(b)
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Stamp(body, "abc", 1, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExtractTokensPatient(b *testing.B) {
	res, err := DecodeResource(benchBody(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ExtractTokens("Patient", res)
	}
}
