module github.com/sponsored/sponsor

go 1.26.8
