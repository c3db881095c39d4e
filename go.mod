module github.com/hearth-fhir/hearth

go 1.26.8

require github.com/samply/golang-fhir-models/fhir-models v0.3.2
