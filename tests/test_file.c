#include <criterion/criterion.h>
Test(file, placeholder) {}
